"""PyTorch implementations of the fused ops: the numerical reference (float64 capable) and the
CPU path. Plain differentiable torch code, so autograd, FSDP and torch.compile see ordinary ops.

Maths (one token, action bins b = 0..N-1, temperature tau):
    z_b      = <h, W[bin_start + b]> / tau                 (fp32 or fp64 accumulation)
    lse      = log sum_b exp(z_b)
    logp     = z_label - lse
    entropy  = lse - sum_b p_b z_b,   p_b = exp(z_b - lse)
GRPO / PPO clipped surrogate per token (veRL core_algos conventions):
    d      = clamp(logp - old_logp, -20, 20),  r = exp(d)
    l1     = -A r,  l2 = -A clamp(r, 1 - clip_low, 1 + clip_high),  c1 = max(l1, l2)
    dual   : l3 = -A clip_c,  loss_t = min(l3, c1) where A < 0 else c1
    clipfrac = masked_mean(l2 > l1), clipfrac_lower = masked_mean((c1 > l3) & (A < 0)),
    ppo_kl   = masked_mean(-d),  masked_mean(x) = sum(x m) / (sum(m) + 1e-8)
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
LOG_RATIO_CLAMP = 20.0
MASKED_MEAN_EPS = 1e-8


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def binned_logprob_from_scaled_logits(z: torch.Tensor, labels: torch.Tensor, return_entropy: bool):
    """log-softmax over the last dim of `z` (already divided by the temperature), gathered at
    `labels`; optionally the entropy. Rows of -inf are impossible here (bins are finite)."""
    logp_all = torch.log_softmax(z, dim=-1)
    logp = logp_all.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    if not return_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def action_logprob_torch(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                         temperature: float, bin_start: int, bin_end: int,
                         return_entropy: bool = False):
    """hidden [T, H], weight [V, H], labels [T] -> logp [T] (and entropy [T]), fp32 (fp64 if any
    input is fp64). Only rows bin_start:bin_end of the weight are read."""
    dtype = _compute_dtype(hidden, weight)
    w_bins = weight[bin_start:bin_end].to(dtype)
    z = (hidden.to(dtype) @ w_bins.T) * (1.0 / temperature)
    return binned_logprob_from_scaled_logits(z, labels, return_entropy)


def action_logprob_from_logits_torch(logits: torch.Tensor, labels: torch.Tensor, *,
                                     temperature: float, bin_start: int, bin_end: int,
                                     return_entropy: bool = False):
    """logits [T, V], labels [T] -> logp [T] (and entropy [T]) over logits[:, bin_start:bin_end]."""
    dtype = _compute_dtype(logits)
    z = logits[:, bin_start:bin_end].to(dtype) * (1.0 / temperature)
    return binned_logprob_from_scaled_logits(z, labels, return_entropy)


def token_weights(mask: torch.Tensor, agg: str) -> torch.Tensor:
    """Per-token weights w with loss = sum(w * loss_t) for aggregation mode `agg` (mask [B, L]).
    A sequence without valid tokens contributes 0 to seq-mean-token-mean (veRL divides 0 by 0)."""
    m = mask
    n_seq, seq_len = m.shape
    if agg == "token-mean":
        return m / (m.sum() + MASKED_MEAN_EPS)
    if agg == "seq-mean-token-sum":
        return m / n_seq
    if agg == "seq-mean-token-mean":
        count = m.sum(-1, keepdim=True)
        count = torch.where(count > 0, count, torch.ones_like(count))
        return m / count / n_seq
    if agg == "seq-mean-token-sum-norm":
        return m / seq_len
    raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / (mask.sum() + MASKED_MEAN_EPS)


def grpo_loss_torch(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, *, clip_low: float, clip_high: float,
                    clip_c: float | None = None, agg: str = "token-mean"):
    """Clipped surrogate of [B, L] inputs -> (scalar loss, stats dict). Computes in fp32 (fp64 if
    logp is fp64); gradient flows into `logp` only. Masked-out tokens never touch the result,
    even when they hold inf or NaN."""
    dtype = _compute_dtype(logp)
    valid = mask != 0
    m = mask.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=logp.device)
    # masked-out positions are replaced before any arithmetic so garbage there cannot leak
    logp_c = torch.where(valid, logp.to(dtype), zero)
    old_c = torch.where(valid, old_logp.to(dtype), zero).detach()
    adv = torch.where(valid, advantages.to(dtype), zero).detach()

    log_ratio = torch.clamp(logp_c - old_c, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    c1 = torch.maximum(l1, l2)
    clipped = (l2 > l1).to(dtype)
    if clip_c is not None:
        l3 = -adv * clip_c
        per_token = torch.where(adv < 0, torch.minimum(l3, c1), c1)
        clipped_lower = ((c1 > l3) & (adv < 0)).to(dtype)
    else:
        per_token = c1
        clipped_lower = torch.zeros_like(clipped)

    loss = (token_weights(m, agg) * per_token).sum()
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(clipped, m),
            "clipfrac_lower": masked_mean(clipped_lower, m),
            "ppo_kl": masked_mean(-log_ratio.detach(), m),
        }
    return loss, stats
