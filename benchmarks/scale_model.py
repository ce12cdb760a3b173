"""One RL step at SimpleVLA-RL's scale, predicted from component rates (docs/scale.md).

    python benchmarks/scale_model.py [--env-ms 30.0] [--mean-chunks 20] [--rounds 1.5]

The policy's FLOPs are counted from OpenVLA-OFT's real shapes (`OpenVLAOFTConfig.openvla_7b()`:
DINOv2-L/14 and SigLIP-so400m/14 at 224 px, each run to its second-to-last block, the fused MLP
projector, Llama-2-7B over BOS + 256 vision tokens + the prompt + 56 action slots + the stop token,
one parallel-decoding forward per observation). GPU rates are published dense bf16 peaks times a
stated MFU; communication is FSDP's all-gather / reduce-scatter volume at a stated bus bandwidth;
the engine's rate is the measured CPU time of one chunk per env (`--env-ms`, from
benchmarks/bench_libero.py's "no cameras" row) plus a stated GPU render time per frame.
Everything that is assumed rather than measured is a named argument and printed with the result.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlarl_fast.policy.config import OpenVLAOFTConfig  # noqa: E402

# Published dense bf16 tensor-core peaks (TFLOP/s, without sparsity) and NVLink bandwidth per GPU
# (GB/s, one direction) from NVIDIA's data sheets: A100/A800 SXM 312 (A800: NVLink cut to 400 GB/s
# bidirectional), H100 SXM 989 (NVLink 900 GB/s bidirectional), H20 148 (NVLink 900 GB/s).
GPUS = {"A800": (312.0, 200.0), "H100": (989.0, 450.0), "H20": (148.0, 450.0)}
PROMPT_TOKENS = 34  # "In: What action should the robot take to <instruction>?\nOut:" with a LIBERO instruction


@dataclass
class Flops:
    vision: float
    projector: float
    llm_linear: float
    llm_attention: float
    seq_len: int

    @property
    def forward(self) -> float:
        return self.vision + self.projector + self.llm_linear + self.llm_attention


def vit_flops(v, tokens: int) -> float:
    """Forward FLOPs of a ViT run to block depth-2 (inclusive) over `tokens` tokens."""
    blocks = v.feature_block_index + 1
    d, m = v.embed_dim, v.mlp_hidden_dim
    per_block = 2 * tokens * (4 * d * d + 2 * d * m) + 4 * tokens * tokens * d  # linears + QK^T, AV
    patch = 2 * v.num_patches * (3 * v.patch_size ** 2) * d
    return blocks * per_block + patch


def policy_flops(cfg: OpenVLAOFTConfig, prompt_tokens: int = PROMPT_TOKENS) -> Flops:
    dino, siglip = cfg.vision
    n_img = cfg.num_images
    vision = n_img * (vit_flops(dino, dino.num_patches + dino.num_prefix_tokens) + vit_flops(siglip, siglip.num_patches))
    vd, h = cfg.vision_dim, cfg.text.hidden_size
    n_vis = n_img * dino.num_patches
    projector = 2 * n_vis * (vd * 4 * vd + 4 * vd * h + h * h)
    t = cfg.text
    seq = 1 + n_vis + prompt_tokens + cfg.num_action_tokens + 1
    kv = h * t.num_key_value_heads // t.num_attention_heads
    per_layer = 2 * seq * (2 * h * h + 2 * h * kv + 3 * h * t.intermediate_size)
    attention = t.num_hidden_layers * 4 * seq * seq * h
    head = 2 * cfg.num_action_tokens * h * cfg.n_action_bins  # the fused log-prob reads the bin rows only
    return Flops(vision, projector, t.num_hidden_layers * per_layer + head, attention, seq)


def parameters(cfg: OpenVLAOFTConfig) -> float:
    import torch

    from vlarl_fast.policy import OpenVLAOFT

    with torch.device("meta"):
        model = OpenVLAOFT(cfg)
    return float(sum(p.numel() for p in model.parameters()))


def predict(args) -> str:
    cfg = OpenVLAOFTConfig.openvla_7b()
    f = policy_flops(cfg)
    n_params = parameters(cfg)
    peak, bus = GPUS[args.gpu]
    rate = peak * 1e12 * args.mfu * args.gpus  # FLOP/s of the node
    traj = args.prompts * args.samples
    obs_rollout = traj * args.mean_chunks * args.rounds  # policy inputs over all rounds
    obs_update = traj * args.mean_chunks  # kept groups only
    # rollout: one forward per observation; the policy waits for the env and vice versa (no overlap)
    t_policy = obs_rollout * f.forward / rate
    chunks_per_rank = traj * args.rounds / args.gpus * args.mean_chunks
    env_cores = args.cpu_cores / args.gpus
    t_env = chunks_per_rank * args.env_ms / 1e3 / env_cores + chunks_per_rank * args.render_ms / 1e3 / args.render_streams
    # rollout weights: the sharded model gathered per layer once per chunk wave (FSDP, bf16)
    waves = args.max_chunks * args.rounds
    t_gather_rollout = waves * 2 * n_params * (args.gpus - 1) / args.gpus / (bus * 1e9)
    # update: old log-probs (one forward, the training model), forward + backward (3x), activation
    # checkpointing's recomputed forward (1x)
    passes = 1 + 3 + (1 if args.checkpointing else 0)
    t_update = obs_update * passes * f.forward / rate
    micro = obs_update / args.gpus / args.micro_batch
    bytes_per_micro = (2 + 2) * n_params * (args.gpus - 1) / args.gpus + 4 * n_params * (args.gpus - 1) / args.gpus
    t_comm_update = micro * bytes_per_micro / (bus * 1e9)
    t_comm_exposed = max(0.0, t_comm_update - t_update)  # FSDP prefetch overlaps it with compute
    t_opt = 28 * n_params / args.gpus / (args.hbm_gbs * 1e9)  # AdamW: read p, g, m, v (fp32), write p, m, v
    rollout = t_policy + t_env + t_gather_rollout
    update = t_update + t_comm_exposed + t_opt
    total = rollout + update
    ref = args.reference_s
    lines = [
        f"OpenVLA-OFT 7B: {n_params / 1e9:.2f} B parameters; one observation = {f.seq_len} LLM tokens",
        f"  forward FLOPs per observation: vision {f.vision / 1e12:.3f} T, projector {f.projector / 1e12:.3f} T, "
        f"Llama linears {f.llm_linear / 1e12:.3f} T, attention {f.llm_attention / 1e12:.3f} T = {f.forward / 1e12:.2f} TFLOP",
        f"node: {args.gpus} x {args.gpu} ({peak:.0f} TFLOP/s bf16 dense each, MFU {args.mfu:.0%}: "
        f"{rate / 1e15:.2f} PFLOP/s), bus {bus:.0f} GB/s per GPU, {args.cpu_cores} CPU cores",
        f"step: {args.prompts} prompts x {args.samples} = {traj} trajectories, mean {args.mean_chunks} chunks "
        f"(of {args.max_chunks}), {args.rounds} sampling rounds",
        "",
        "| part | work | seconds |",
        "|---|---|---:|",
        f"| rollout: policy forwards | {obs_rollout:,.0f} obs x {f.forward / 1e12:.2f} TF | {t_policy:.1f} |",
        f"| rollout: engine (physics+control {args.env_ms:.1f} ms/chunk/core, render {args.render_ms:.1f} ms/frame) | "
        f"{chunks_per_rank:,.0f} env-chunks per rank on {env_cores:.0f} cores | {t_env:.1f} |",
        f"| rollout: FSDP weight all-gathers | {waves:.0f} waves x {2 * n_params / 1e9:.1f} GB | {t_gather_rollout:.1f} |",
        f"| update: old log-probs + fwd/bwd{' + recompute' if args.checkpointing else ''} | {obs_update:,.0f} obs x {passes} passes | {t_update:.1f} |",
        f"| update: FSDP all-gather/reduce-scatter (exposed of {t_comm_update:.1f} s) | {micro:.0f} micro-batches of {args.micro_batch} obs per GPU | {t_comm_exposed:.1f} |",
        f"| update: AdamW step | {n_params / 1e9:.1f} B fp32 states, sharded | {t_opt:.1f} |",
        f"| **one RL step** | | **{total:.0f}** |",
        "",
        f"against SimpleVLA-RL's {ref:.0f} s: {ref / total:.1f}x faster ({total / ref:.2f} of its time); "
        f"goal <= 1/5: {'met' if total <= ref / 5 else 'NOT met'}; largest part: "
        + max((("policy forwards in the rollout", t_policy), ("the engine", t_env), ("the update's compute", t_update),
               ("communication", t_gather_rollout + t_comm_exposed)), key=lambda x: x[1])[0],
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", choices=sorted(GPUS), default="A800")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOP utilisation")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-chunks", type=int, default=64, help="512 steps / 8 actions")
    ap.add_argument("--mean-chunks", type=float, default=64.0, help="mean executed chunks per trajectory")
    ap.add_argument("--rounds", type=float, default=1.0, help="dynamic-sampling rounds per step")
    ap.add_argument("--env-ms", type=float, required=True, help="measured CPU ms per chunk per env, no render")
    ap.add_argument("--render-ms", type=float, default=1.0, help="assumed GPU EGL ms per 256x256 frame")
    ap.add_argument("--render-streams", type=int, default=4, help="render threads per rank in parallel")
    ap.add_argument("--cpu-cores", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--hbm-gbs", type=float, default=2000.0)
    ap.add_argument("--reference-s", type=float, default=2700.0, help="SimpleVLA-RL's step (45 min, 8 x A800)")
    return ap


def main(argv=None) -> int:
    print(predict(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
