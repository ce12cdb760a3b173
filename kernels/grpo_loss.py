"""Fused GRPO / PPO clipped-surrogate loss: loss, gradient and statistics in one pass.

Maths per token (A advantage, m mask weight, veRL core_algos conventions):
    d   = clamp(logp - old_logp, -20, 20),   r = exp(d)
    l1  = -A r,   l2 = -A clamp(r, 1 - clip_low, 1 + clip_high),   c1 = max(l1, l2)
    dual clip (clip_c given): l3 = -A clip_c, loss_t = l3 where (A < 0 and l3 < c1) else c1
    loss = sum_t w_t loss_t with aggregation weights w_t:
        token-mean               m_t / (sum m + 1e-8)
        seq-mean-token-mean      m_t / n_b / B,  n_b = sum of row b's mask (1 if that is 0)
        seq-mean-token-sum       m_t / B
        seq-mean-token-sum-norm  m_t / L        (veRL: sum of all sequences / L)
Gradient (the loss is piecewise in r; clamps pass gradient on their closed interval):
    dloss/dlogp_t = w_t * (-A r)  where |logp - old_logp| <= 20, l2 <= l1 and the dual clip
                                   is not active; 0 elsewhere
Statistics (token means, masked_mean(x) = sum(x m) / (sum m + 1e-8)):
    clipfrac = masked_mean(l2 > l1), clipfrac_lower = masked_mean(c1 > l3 and A < 0),
    ppo_kl = masked_mean(-d)
One kernel pass over a 2D grid (row blocks x column blocks) reads logp, old_logp, advantages
(stride 0 along L when given per sequence) and the mask once, writes the gradient already
scaled by w_t and 5 partial sums per program (loss, clip counts, KL, mask sum); torch adds the
partials (no atomics: deterministic). The weights' denominators come from one read of the mask
(token-mean: its sum, seq-mean-token-mean: its row sums) before the pass. The backward scales
the saved gradient by the upstream scalar. Masked-out tokens are never used in
arithmetic, so inf/NaN padding cannot leak.
"""

from __future__ import annotations

import torch

from ._triton_setup import HAS_TRITON, interpreting, next_pow2, tl, triton
from .dispatch import select_backend
from .reference import AGG_MODES, MASKED_MEAN_EPS, grpo_loss_torch

if HAS_TRITON:

    @triton.jit
    def _grpo_loss_fwd_kernel(
        logp_ptr, old_ptr, adv_ptr, mask_ptr, scale_ptr, grad_ptr, partial_ptr,
        n_seq, seq_len,
        stride_logp, stride_old, stride_adv_row, stride_adv_col, stride_mask,
        ratio_low, ratio_high, clip_c, scale_value,
        SCALE_MODE: tl.constexpr, HAS_DUAL_CLIP: tl.constexpr,
        ROWS: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Program (i, j): rows i*ROWS.., columns j*BLOCK_L..; writes the weighted gradient and
        5 partial sums (loss, clipped, clipped-lower, -log-ratio, mask)."""
        pid_rows = tl.program_id(0)
        pid_cols = tl.program_id(1)
        cols = pid_cols * BLOCK_L + tl.arange(0, BLOCK_L)
        acc_loss = tl.zeros((BLOCK_L,), dtype=tl.float32)
        acc_clip = tl.zeros((BLOCK_L,), dtype=tl.float32)
        acc_lower = tl.zeros((BLOCK_L,), dtype=tl.float32)
        acc_kl = tl.zeros((BLOCK_L,), dtype=tl.float32)
        acc_mask = tl.zeros((BLOCK_L,), dtype=tl.float32)
        # `scale` is defined on every path (inductor's copy of this kernel under torch.compile
        # rejects a name bound in some branches only): constant weight for
        # seq-mean-token-sum(-norm); token-mean reads 1 / (sum m + 1e-8) computed on the device
        scale = scale_value
        if SCALE_MODE == 1:
            scale = tl.load(scale_ptr)
        for r in range(ROWS):
            row = pid_rows * ROWS + r
            row64 = row.to(tl.int64)
            row_len = tl.where(row < n_seq, seq_len, 0)  # past the last row: nothing valid
            if SCALE_MODE == 2:  # seq-mean-token-mean: 1 / n_b / B per row
                row_scale = tl.load(scale_ptr + tl.minimum(row, n_seq - 1))
            else:
                row_scale = scale
            ok = cols < row_len
            m = tl.load(mask_ptr + row64 * stride_mask + cols, mask=ok, other=0).to(tl.float32)
            valid = ok & (m != 0.0)
            lp = tl.load(logp_ptr + row64 * stride_logp + cols, mask=valid, other=0.0).to(tl.float32)
            old = tl.load(old_ptr + row64 * stride_old + cols, mask=valid, other=0.0).to(tl.float32)
            a = tl.load(adv_ptr + row64 * stride_adv_row + cols * stride_adv_col, mask=valid,
                        other=0.0).to(tl.float32)
            d = lp - old
            d_clamped = tl.minimum(tl.maximum(d, -20.0), 20.0)
            ratio = tl.exp(d_clamped)
            l1 = -a * ratio
            l2 = -a * tl.minimum(tl.maximum(ratio, ratio_low), ratio_high)
            c1 = tl.maximum(l1, l2)
            clipped = l2 > l1
            passes = (d >= -20.0) & (d <= 20.0) & (l2 <= l1)
            if HAS_DUAL_CLIP:
                l3 = -a * clip_c
                dual = (a < 0.0) & (l3 < c1)
                loss_t = tl.where(dual, l3, c1)
                passes = passes & (dual == 0)
                acc_lower += tl.where(valid & (c1 > l3) & (a < 0.0), m, 0.0)
            else:
                loss_t = c1
            w = tl.where(valid, m * row_scale, 0.0)
            acc_loss += w * loss_t
            acc_clip += tl.where(valid & clipped, m, 0.0)
            acc_kl += tl.where(valid, -m * d_clamped, 0.0)
            acc_mask += tl.where(valid, m, 0.0)
            tl.store(grad_ptr + row64 * seq_len + cols, tl.where(passes, w * (-a * ratio), 0.0),
                     mask=ok)
        out = partial_ptr + (pid_rows * tl.num_programs(1) + pid_cols) * 5
        tl.store(out + 0, tl.sum(acc_loss, 0))
        tl.store(out + 1, tl.sum(acc_clip, 0))
        tl.store(out + 2, tl.sum(acc_lower, 0))
        tl.store(out + 3, tl.sum(acc_kl, 0))
        tl.store(out + 4, tl.sum(acc_mask, 0))


def _launch_config(n_seq: int, seq_len: int) -> dict:
    if interpreting():  # ~1 ms per program: at most ~2 x ceil(L / 1024) programs
        return dict(BLOCK_L=min(next_pow2(seq_len), 1024), ROWS=max(1, triton.cdiv(n_seq, 2)),
                    num_warps=4)
    # GPU: ~1-8K tokens per program, a 2D grid over (row blocks, column blocks) for bandwidth
    block_l = min(next_pow2(seq_len, 128), 1024)
    return dict(BLOCK_L=block_l, ROWS=max(1, min(8, 1024 // block_l)), num_warps=4)


def grpo_loss_fwd_triton(logp, old_logp, advantages, mask, clip_low, clip_high, clip_c, agg):
    """[B, L] inputs (advantages [B, L] or [B]) -> (loss, stats [3], grad fp32 [B, L])."""
    n_seq, seq_len = logp.shape
    dev = logp.device
    if mask.dtype == torch.bool:
        # a free reinterpretation in eager mode; inductor (torch 2.11) cannot lower a bool->uint8
        # view, so under torch.compile the mask is converted instead
        mask_k = mask.to(torch.uint8) if torch.compiler.is_compiling() else mask.view(torch.uint8)
    else:
        mask_k = mask
    scale_mode, scale_value, scale = 0, 0.0, None
    if agg == "token-mean":
        scale_mode = 1
        scale = 1.0 / (mask_k.sum(dtype=torch.float32).reshape(1) + MASKED_MEAN_EPS)
    elif agg == "seq-mean-token-mean":
        scale_mode = 2
        count = mask_k.sum(-1, dtype=torch.float32)
        scale = 1.0 / torch.where(count != 0, count, torch.ones_like(count)) / n_seq
    elif agg == "seq-mean-token-sum":
        scale_value = 1.0 / n_seq
    else:  # seq-mean-token-sum-norm
        scale_value = 1.0 / seq_len
    grad = torch.empty((n_seq, seq_len), dtype=torch.float32, device=dev)
    cfg = _launch_config(n_seq, seq_len)
    grid = (triton.cdiv(n_seq, cfg["ROWS"]), triton.cdiv(seq_len, cfg["BLOCK_L"]))
    partial = torch.empty((grid[0] * grid[1], 5), dtype=torch.float32, device=dev)
    if advantages.dim() == 1:
        stride_adv_row, stride_adv_col = advantages.stride(0), 0
    else:
        stride_adv_row, stride_adv_col = advantages.stride(0), advantages.stride(1)
    _grpo_loss_fwd_kernel[grid](
        logp, old_logp, advantages, mask_k, grad if scale is None else scale, grad, partial,
        n_seq, seq_len,
        logp.stride(0), old_logp.stride(0), stride_adv_row, stride_adv_col, mask_k.stride(0),
        1.0 - clip_low, 1.0 + clip_high, 0.0 if clip_c is None else float(clip_c), scale_value,
        SCALE_MODE=scale_mode, HAS_DUAL_CLIP=clip_c is not None,
        ROWS=cfg["ROWS"], BLOCK_L=cfg["BLOCK_L"], num_warps=cfg["num_warps"])
    sums = partial.sum(0)
    stats = sums[1:4] / (sums[4] + MASKED_MEAN_EPS)
    return sums[0], stats, grad


class GrpoLossFunction(torch.autograd.Function):
    """Triton autograd Function: gradient flows into logp only."""

    @staticmethod
    def forward(ctx, logp, old_logp, advantages, mask, clip_low, clip_high, clip_c, agg):
        loss, stats, grad = grpo_loss_fwd_triton(logp, old_logp, advantages, mask,
                                                 clip_low, clip_high, clip_c, agg)
        ctx.save_for_backward(grad)
        ctx.logp_dtype = logp.dtype
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, g_loss, _g_stats):
        (grad,) = ctx.saved_tensors
        return (grad * g_loss).to(ctx.logp_dtype), None, None, None, None, None, None, None


def _check_inputs(logp, old_logp, advantages, mask, clip_low, clip_high, clip_c, agg):
    for name, t in (("logp", logp), ("old_logp", old_logp), ("advantages", advantages)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if logp.dim() not in (1, 2):
        raise ValueError(f"logp must have shape [B, L] or [L], got {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"{name} must have logp's shape {tuple(logp.shape)}, got {tuple(t.shape)}")
    per_seq = logp.dim() == 2 and tuple(advantages.shape) == (logp.shape[0],)
    if advantages.shape != logp.shape and not per_seq:
        raise ValueError(f"advantages must have shape {tuple(logp.shape)} (or [B]), got "
                         f"{tuple(advantages.shape)}")
    devices = {t.device for t in (logp, old_logp, advantages, mask)}
    if len(devices) > 1:
        raise ValueError(f"logp, old_logp, advantages and mask must share a device, got {devices}")
    if agg not in AGG_MODES:
        raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if not clip_high >= 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if clip_c is not None and not clip_c > 1.0:
        raise ValueError(f"clip_c (dual-clip constant) must be > 1.0 or None, got {clip_c}")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, *, clip_low: float, clip_high: float,
              clip_c: float | None = None, agg: str = "token-mean",
              backend: str | None = None):
    """PPO/GRPO clipped surrogate (SimpleVLA-RL: clip_low=0.2, clip_high=0.28, no KL term).

    logp, old_logp, mask [B, L] (or [L], one sequence); advantages [B, L] or [B]; mask bool,
    integer or float weights. Returns (scalar loss, {"clipfrac", "clipfrac_lower", "ppo_kl"})
    with detached fp32 statistics. The loss is fp32 (fp64 on the fp64 reference path).
    """
    _check_inputs(logp, old_logp, advantages, mask, clip_low, clip_high, clip_c, agg)
    if logp.dim() == 1:
        logp, old_logp, mask = logp[None], old_logp[None], mask[None]
        advantages = advantages[None]
    fp64 = logp.dtype == torch.float64
    chosen = select_backend("grpo_loss", [logp, old_logp, advantages, mask], backend,
                            triton_supports=not fp64, unsupported_reason="fp64 logp")
    if chosen == "torch" or logp.numel() == 0:
        adv = advantages[:, None].expand_as(logp) if advantages.dim() == 1 else advantages
        return grpo_loss_torch(logp, old_logp, adv, mask, clip_low=clip_low,
                               clip_high=clip_high, clip_c=clip_c, agg=agg)
    logp_c = logp if logp.stride(-1) == 1 else logp.contiguous()
    old_c = old_logp if old_logp.stride(-1) == 1 else old_logp.contiguous()
    mask_c = mask if mask.stride(-1) == 1 else mask.contiguous()
    adv_c = advantages if advantages.dim() == 1 or advantages.stride(-1) == 1 \
        else advantages.contiguous()
    if torch.is_grad_enabled() and logp.requires_grad:
        loss, stats = GrpoLossFunction.apply(logp_c, old_c.detach(), adv_c.detach(), mask_c,
                                             float(clip_low), float(clip_high), clip_c, agg)
    else:
        loss, stats, _ = grpo_loss_fwd_triton(logp_c, old_c, adv_c, mask_c, float(clip_low),
                                              float(clip_high), clip_c, agg)
    return loss, {"clipfrac": stats[0], "clipfrac_lower": stats[1], "ppo_kl": stats[2]}
