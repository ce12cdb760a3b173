"""Training memory of the 7B OpenVLA-OFT per GPU, measured layer by layer at its real widths.

    python benchmarks/memory_table.py [--observations 16] [--gpus 8] [--layers 32]

What is measured, on the CPU:
* parameters, gradients, AdamW state per layer: one Llama decoder layer (hidden 4096), one DINOv2
  ViT-L block and one SigLIP so400m block are built in float32 (the master weights FSDP shards),
  run forward and backward on a few tokens and take one AdamW step; the bytes are read off the
  parameters, their `.grad` and `optimizer.state`.
* activations per layer: the tensors autograd saves for backward (a `saved_tensors_hooks` pack hook
  sums the distinct storages that are not parameters) when the layer runs in bfloat16 on one
  micro-batch of `--observations` observations at SimpleVLA-RL's LIBERO sequence (1 image: BOS +
  256 vision tokens + 32 prompt tokens + 56 action slots + STOP = 346 tokens), with and without
  activation checkpointing (`torch.utils.checkpoint`, non-reentrant, as
  `OpenVLAOFT.gradient_checkpointing_enable`). Full-width bf16 matmuls are out of reach of this CPU
  (no bf16 units), so the layers run under `FakeTensorMode`: the real module code and the CPU
  dispatch (same SDPA flash kernel, same fp32 upcasts), shapes and dtypes only. The script first
  checks, at a reduced width, that the fake run saves exactly the tensors (shapes, dtypes, bytes)
  a real bf16 run saves, and stops if not.
* the whole policy built at the real widths with 2 Llama layers (both vision towers at full size,
  on the meta device) gives the parameter counts of the parts that are not layers.

Extrapolated to the 7B (32 Llama layers; 23 DINOv2 and 26 SigLIP blocks run: Prismatic reads the
second-to-last block) and 8-way FSDP: states / 8; activations are per rank (FSDP does not shard
them); FSDP's unsharded bf16 working copies of the layer in use and the prefetched one; the rollout
replica in bf16 (resident: `sync_rollout_policy`). Next to `policy/memory_estimate.py` and 80 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import platform
import time

import torch

GIB = 2**30
GB = 1e9


class default_dtype:
    """Modules built in `dtype` (FakeTensorMode cannot convert parameters with `.to`)."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.previous)


def saved_bytes(fn, params) -> tuple[int, dict]:
    """Bytes of the distinct non-parameter storages autograd saves while `fn()` runs."""
    param_ids = {p.untyped_storage()._cdata for p in params}
    seen: dict[int, tuple] = {}

    def pack(t):
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in param_ids and key not in seen:
            seen[key] = (storage.nbytes(), str(t.dtype).removeprefix("torch."), tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(v[0] for v in seen.values()), seen


# ---- the layers -----------------------------------------------------------------------------------
def llama_layer(text_cfg, cfg):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    lc = text_cfg.to_llama_config(cfg.pad_token_id, cfg.bos_token_id, cfg.stop_token_id, "sdpa")
    layer = LlamaDecoderLayer(lc, 0)
    layer.self_attn.is_causal = False  # OpenVLA-OFT's bidirectional attention
    return layer, LlamaRotaryEmbedding(lc)


def llama_step(layer, rotary, batch: int, seq: int, hidden: int, dtype, checkpointing: bool):
    from torch.utils.checkpoint import checkpoint

    def run():
        x = torch.randn(batch, seq, hidden, dtype=dtype, requires_grad=True)
        pos = torch.arange(seq)[None].expand(batch, seq)
        cos, sin = rotary(x, pos)
        if checkpointing:
            return checkpoint(layer, x, None, pos, position_embeddings=(cos, sin), use_reentrant=False)
        return layer(x, attention_mask=None, position_ids=pos, position_embeddings=(cos, sin))

    return run


def vit_step(block, batch: int, tokens: int, dim: int, dtype, checkpointing: bool):
    from torch.utils.checkpoint import checkpoint

    def run():
        x = torch.randn(batch, tokens, dim, dtype=dtype, requires_grad=True)
        return checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)

    return run


def fake_matches_real() -> str:
    """A reduced-width Llama layer and ViT block in bf16: the fake run must save the same tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from vlarl_fast.policy.config import OpenVLAOFTConfig, ViTConfig
    from vlarl_fast.policy.vision import Block

    cfg = OpenVLAOFTConfig.openvla_7b()
    text = dataclasses.replace(cfg.text, hidden_size=256, intermediate_size=688, num_attention_heads=4,
                               num_key_value_heads=4, num_hidden_layers=1)
    vit = dataclasses.replace(ViTConfig.dinov2_vit_large_reg4(224), embed_dim=128, mlp_hidden_dim=512, num_heads=2)
    results = []
    for fake in (False, True):
        torch.manual_seed(0)
        mode = FakeTensorMode() if fake else None
        if mode is not None:
            mode.__enter__()
        try:
            with default_dtype(torch.bfloat16):
                layer, rotary = llama_layer(text, cfg)
                block = Block(vit)
            n1, s1 = saved_bytes(llama_step(layer, rotary, 3, 346, 256, torch.bfloat16, False), layer.parameters())
            n2, s2 = saved_bytes(vit_step(block, 3, 261, 128, torch.bfloat16, False), block.parameters())
        finally:
            if mode is not None:
                mode.__exit__(None, None, None)
        results.append((n1, sorted(s1.values()), n2, sorted(s2.values())))
    if results[0] != results[1]:
        raise SystemExit(f"fake and real runs save different tensors:\nreal {results[0]}\nfake {results[1]}")
    return (f"check: reduced-width bf16 Llama layer and ViT block save the same tensors in a real run and "
            f"under FakeTensorMode ({results[0][0]} and {results[0][2]} bytes, {len(results[0][1])} and "
            f"{len(results[0][3])} tensors)")


def states_per_layer(module, make_input) -> dict[str, int]:
    """fp32 parameters, gradients and AdamW state of `module`, measured after one real step."""
    module = module.float()
    out = module(*make_input())
    (out[0] if isinstance(out, tuple) else out).float().square().mean().backward()
    trainable = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-6)
    opt.step()
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in trainable)
    optim = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)
    numel = sum(p.numel() for p in module.parameters())
    del opt, out
    return {"numel": numel, "params": params, "grads": grads, "optim": optim}


def measure(observations: int, prompt_tokens: int) -> dict:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from vlarl_fast.policy.config import OpenVLAOFTConfig
    from vlarl_fast.policy.memory_estimate import sequence_length
    from vlarl_fast.policy.vision import Block

    cfg = OpenVLAOFTConfig.openvla_7b()
    seq = sequence_length(cfg, prompt_tokens)
    h = cfg.text.hidden_size
    dino, siglip = cfg.vision
    rows: dict = {"seq": seq}
    # states: real float32 modules, one step each
    layer, rotary = llama_layer(cfg.text, cfg)

    def llama_input():
        x = torch.randn(1, 8, h)
        pos = torch.arange(8)[None]
        return (x, None, pos, None, False, rotary(x, pos))

    rows["llama_states"] = states_per_layer(layer, llama_input)
    del layer
    gc.collect()
    for name, vc in (("dino", dino), ("siglip", siglip)):
        rows[f"{name}_states"] = states_per_layer(Block(vc), lambda vc=vc: (torch.randn(1, 8, vc.embed_dim),))
        gc.collect()
    # activations: bf16, the real modules under FakeTensorMode
    with FakeTensorMode(), default_dtype(torch.bfloat16):
        layer, rotary = llama_layer(cfg.text, cfg)
        for ckpt in (False, True):
            rows[f"llama_act_{ckpt}"] = saved_bytes(
                llama_step(layer, rotary, observations, seq, h, torch.bfloat16, ckpt), layer.parameters())[0]
        for name, vc in (("dino", dino), ("siglip", siglip)):
            block = Block(vc)
            tokens = vc.num_patches + vc.num_prefix_tokens
            for ckpt in (False, True):
                rows[f"{name}_act_{ckpt}"] = saved_bytes(
                    vit_step(block, observations * cfg.num_images, tokens, vc.embed_dim, torch.bfloat16, ckpt),
                    block.parameters())[0]
        from vlarl_fast.policy.projector import FusedMLPProjector

        proj = FusedMLPProjector(cfg.vision_dim, h)
        rows["projector_act"] = saved_bytes(lambda: proj(torch.randn(
            observations, cfg.num_vision_tokens, cfg.vision_dim, dtype=torch.bfloat16, requires_grad=True)),
            proj.parameters())[0]
    # the whole policy at real widths with 2 Llama layers, on the meta device: parameter counts
    from vlarl_fast.policy.model import OpenVLAOFT

    two = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, num_hidden_layers=2))
    with torch.device("meta"):
        model = OpenVLAOFT(two)
    layers = model.language_model.model.layers
    per_llama = sum(p.numel() for p in layers[0].parameters())
    towers = {"dino": model.vision_backbone.featurizer, "siglip": model.vision_backbone.fused_featurizer}
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows["two_layer_params"] = total
    rows["other_params"] = total - 2 * per_llama - sum(sum(p.numel() for p in t.blocks.parameters())
                                                       for t in towers.values())
    rows["frozen_params"] = total - trainable
    rows["vit_blocks_run"] = {k: t.cfg.feature_block_index + 1 for k, t in towers.items()}
    rows["vit_blocks"] = {k: t.cfg.depth for k, t in towers.items()}
    return rows


def table(rows: dict, observations: int, gpus: int, layers: int, prompt_tokens: int) -> str:
    from vlarl_fast.policy.config import OpenVLAOFTConfig
    from vlarl_fast.policy.memory_estimate import estimate_memory, parameter_count

    ls, ds, ss = rows["llama_states"], rows["dino_states"], rows["siglip_states"]
    out = [f"Per layer, measured (bf16 activations for {observations} observations x {rows['seq']} tokens; "
           f"fp32 master weights, fp32 gradients, AdamW):",
           f"{'layer':<28}{'params':>10}{'grads':>10}{'AdamW':>10}{'act':>10}{'act ckpt':>10}  (MiB; act ckpt: "
           "what a checkpointed layer keeps, its input)"]
    mib = lambda b: f"{b / 2**20:10.1f}"  # noqa: E731
    for name, st, act, ck in (
            ("Llama decoder layer (4096)", ls, rows["llama_act_False"], rows["llama_act_True"]),
            ("DINOv2 ViT-L block (1024)", ds, rows["dino_act_False"], rows["dino_act_True"]),
            ("SigLIP so400m block (1152)", ss, rows["siglip_act_False"], rows["siglip_act_True"])):
        out.append(f"{name:<28}{mib(st['params'])}{mib(st['grads'])}{mib(st['optim'])}{mib(act)}{mib(ck)}")
    out.append(f"{'projector (fused MLP)':<28}{'':>30}{mib(rows['projector_act'])}")
    # the 7B
    n_layer = ls["numel"]
    dino_run, siglip_run = rows["vit_blocks_run"]["dino"], rows["vit_blocks_run"]["siglip"]
    total_params = rows["other_params"] + layers * n_layer + \
        rows["vit_blocks"]["dino"] * ds["numel"] + rows["vit_blocks"]["siglip"] * ss["numel"]
    frozen = rows["frozen_params"]
    trainable = total_params - frozen
    states = (4 * total_params + 8 * trainable + 4 * trainable) / gpus  # fp32 master + AdamW m, v + fp32 grads
    working = 2 * 2 * n_layer  # FSDP: bf16 unsharded copies of the layer in use and the prefetched one
    act = {}
    for ckpt in (False, True):
        if ckpt:  # each checkpointed unit keeps its input; one unit's activations live during its recompute
            kept = layers * rows["llama_act_True"] + dino_run * rows["dino_act_True"] + \
                siglip_run * rows["siglip_act_True"]
            act[ckpt] = kept + rows["projector_act"] + max(rows["llama_act_False"], rows["dino_act_False"],
                                                           rows["siglip_act_False"])
        else:
            act[ckpt] = layers * rows["llama_act_False"] + dino_run * rows["dino_act_False"] + \
                siglip_run * rows["siglip_act_False"] + rows["projector_act"]
    replica = 2 * total_params
    est = {c: estimate_memory(num_gpus=gpus, micro_batch_observations=observations, prompt_tokens=prompt_tokens,
                              checkpointing=c) for c in (False, True)}
    counted = parameter_count(OpenVLAOFTConfig.openvla_7b())
    g = lambda b: f"{b / GB:8.2f}"  # noqa: E731
    out += ["", f"7B OpenVLA-OFT ({total_params / 1e9:.3f} B parameters, {trainable / 1e9:.3f} B trainable; "
            f"{layers} Llama layers, {dino_run} + {siglip_run} ViT blocks run; memory_estimate.py counts "
            f"{counted / 1e9:.3f} B), {gpus}-way FSDP, per GPU (GB):",
            f"{'':<58}{'measured':>9}{'estimate':>9}  (memory_estimate.py)",
            f"{'fp32 params + grads + AdamW, / ' + str(gpus):<58}{g(states)}{g(est[False].value('train: fp32') * GB)}",
            f"{'FSDP bf16 working copies (2 layers unsharded)':<58}{g(working)}{'-':>9}"]
    for ckpt in (False, True):
        label = "checkpointing on" if ckpt else "checkpointing off"
        e = est[ckpt]
        e_act = (e.value("train: LLM") + e.value("train: ViT")) * GB
        out.append(f"{'activations, ' + label:<58}{g(act[ckpt])}{g(e_act)}")
        train = states + working + act[ckpt]
        out.append(f"{'training step total, ' + label:<58}{g(train)}{g(e.value('train: total') * GB)}")
        out.append(f"{'  + rollout replica bf16 (resident), ' + label:<58}{g(train + replica)}"
                   f"{g(e.value('train: total') * GB + e.value('rollout: bf16') * GB)}")
    roll = est[False].value("rollout: peak") * GB
    out.append(f"{'rollout: replica + peak activations (batch 64, estimate)':<58}{g(replica + roll)}")
    for ckpt in (False, True):
        need = states + working + act[ckpt] + replica
        out.append(f"fits in 80 GB with the replica resident, checkpointing {'on' if ckpt else 'off'}: "
                   f"{'yes' if need < 80 * GB else 'NO'} ({need / GB:.1f} GB, {80 - need / GB:.1f} GB left for "
                   f"allocator slack, CUDA context and rollout activations of {roll / GB:.1f} GB)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--observations", type=int, default=16)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    check = fake_matches_real()
    rows = measure(args.observations, args.prompt_tokens)
    print(table(rows, args.observations, args.gpus, args.layers, args.prompt_tokens))
    print(check)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"measured in {time.perf_counter() - t0:.0f} s on {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}; peak RSS of this process {peak:.2f} GiB")


if __name__ == "__main__":
    main()
