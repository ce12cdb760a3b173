"""Analytic parameter count and GPU memory estimate of the policy at SimpleVLA-RL's LIBERO settings.

SimpleVLA-RL (examples/run_openvla_oft_rl_libero.sh): 8 GPUs with FSDP full sharding, fp32 master
weights, AdamW, 64 tasks x 8 samples = 512 trajectories per step, `traj_mini_batch_size=16` (16
observations of one trajectory per micro-batch forward, one trajectory per GPU), no gradient
checkpointing, rollout with all of a GPU's environments (512 / 8 = 64) batched in one forward.

Activation bytes per token and layer count the tensors autograd keeps for backward in bf16 (plus the
fp32 copies RMSNorm/LayerNorm keep); attention uses a fused SDPA kernel (no seq^2 scores kept).
These are estimates: allocator slack, FSDP all-gather buffers and CUDA context are not included.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlarl_fast.policy.config import OpenVLAOFTConfig, ViTConfig

GB = 1e9


def vit_parameter_count(cfg: ViTConfig) -> int:
    d, m = cfg.embed_dim, cfg.mlp_hidden_dim
    count = 3 * cfg.patch_size**2 * d + d  # patch_embed.proj
    count += d * int(cfg.class_token) + d * cfg.num_reg_tokens
    count += d * (cfg.num_patches + (cfg.num_prefix_tokens if cfg.pos_embed_includes_prefix else 0))
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    block += 2 * d if cfg.layer_scale_init is not None else 0
    count += cfg.depth * block + 2 * d  # blocks, final norm
    if cfg.attn_pool:
        count += d + (d * d + d) + (2 * d * d + 2 * d) + (d * d + d) + 2 * d + (d * m + m) + (m * d + d)
    return count


def parameter_count(config: OpenVLAOFTConfig) -> int:
    t = config.text
    h, i, v = t.hidden_size, t.intermediate_size, t.vocab_size
    kv = h // t.num_attention_heads * t.num_key_value_heads
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    llm = 2 * v * h + t.num_hidden_layers * layer + h
    vd = config.vision_dim
    projector = (vd * 4 * vd + 4 * vd) + (4 * vd * h + h) + (h * h + h)
    proprio = (config.proprio_dim * h + h + h * h + h) if config.use_proprio else 0
    return sum(vit_parameter_count(c) for c in config.vision) + projector + proprio + llm


def sequence_length(config: OpenVLAOFTConfig, prompt_tokens: int) -> int:
    return 1 + config.num_vision_tokens + prompt_tokens + config.num_action_tokens + 1


def llm_activation_bytes_per_token(config: OpenVLAOFTConfig) -> int:
    t = config.text
    h, i = t.hidden_size, t.intermediate_size
    kv = h // t.num_attention_heads * t.num_key_value_heads
    bf16 = 2 * (h + h + h + 2 * kv + h + h + h + 4 * i)  # norm in/out, q, k, v, attn out, residual, norm out, MLP
    fp32 = 4 * 2 * h  # RMSNorm fp32 upcasts
    return (bf16 + fp32) * t.num_hidden_layers


def vit_activation_bytes_per_image(cfg: ViTConfig) -> int:
    d, m = cfg.embed_dim, cfg.mlp_hidden_dim
    tokens = cfg.num_patches + cfg.num_prefix_tokens
    per_block = 2 * (8 * d + 2 * m) + 4 * 2 * d  # LN in/out x2, qkv, attn out, residuals, fc1 out, gelu out; fp32 LN stats
    return tokens * per_block * (cfg.depth - 1)


@dataclass
class MemoryEstimate:
    rows: list[tuple[str, float, str]]  # (what, value, unit)

    def value(self, what_prefix: str) -> float:
        return next(v for name, v, _ in self.rows if name.startswith(what_prefix))

    def table(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        lines = [f"{'7B memory estimate (computed)'.ljust(width)}  {'value':>9}  unit", "-" * (width + 17)]
        lines += [f"{name.ljust(width)}  {value:9.2f}  {unit}" for name, value, unit in self.rows]
        return "\n".join(lines)


def estimate_memory(config: OpenVLAOFTConfig | None = None, *, num_gpus: int = 8, micro_batch_observations: int = 16,
                    rollout_batch: int = 64, prompt_tokens: int = 32, checkpointing: bool = False) -> MemoryEstimate:
    config = config or OpenVLAOFTConfig.openvla_7b()
    n = parameter_count(config)
    seq = sequence_length(config, prompt_tokens)
    states = n * (4 + 4 + 8) / num_gpus  # fp32 master, fp32 grad, AdamW m and v, fully sharded
    tokens = micro_batch_observations * seq
    if checkpointing:
        llm_act = tokens * 2 * config.text.hidden_size * config.text.num_hidden_layers + tokens * llm_activation_bytes_per_token(config) / config.text.num_hidden_layers
    else:
        llm_act = tokens * llm_activation_bytes_per_token(config)
    images = micro_batch_observations * config.num_images
    vit_act = images * sum(vit_activation_bytes_per_image(c) for c in config.vision)
    if checkpointing:  # block inputs kept (bf16), one block's activations live during its recompute
        vit_act = images * sum(
            (c.num_patches + c.num_prefix_tokens) * 2 * c.embed_dim * (c.depth - 1) + vit_activation_bytes_per_image(c) / (c.depth - 1)
            for c in config.vision
        )
    vd = config.vision_dim
    projector_act = images * config.num_patches_per_image * 2 * (vd + 2 * 4 * vd + 2 * config.text.hidden_size)
    train_total = states + llm_act + vit_act + projector_act
    weights_bf16 = n * 2
    rollout_tokens = rollout_batch * seq
    rollout_peak = rollout_tokens * 2 * (4 * config.text.hidden_size + 3 * config.text.intermediate_size)
    rows = [
        ("parameters", n / 1e9, "billion"),
        (f"sequence length ({config.num_images} image(s), {prompt_tokens} prompt tokens)", float(seq), "tokens"),
        (f"train: fp32 params+grads+AdamW, FSDP /{num_gpus}", states / GB, "GB/GPU"),
        (f"train: LLM activations, {micro_batch_observations} obs x {seq} tok" + (" (ckpt)" if checkpointing else ""), llm_act / GB, "GB/GPU"),
        (f"train: ViT+projector activations, {images} images", (vit_act + projector_act) / GB, "GB/GPU"),
        ("train: total", train_total / GB, "GB/GPU"),
        ("rollout: bf16 weights (full copy)", weights_bf16 / GB, "GB/GPU"),
        (f"rollout: peak transient activations, batch {rollout_batch}", rollout_peak / GB, "GB/GPU"),
        ("rollout: total", (weights_bf16 + rollout_peak) / GB, "GB/GPU"),
    ]
    return MemoryEstimate(rows)
