"""veRL-signature drop-ins backed by the fused kernels; importable without veRL installed.

Switch by import:

    # from verl.trainer.ppo.core_algos import compute_policy_loss, agg_loss, compute_grpo_outcome_advantage
    # from verl.utils.torch_functional import logprobs_from_logits, entropy_from_logits, masked_mean
    from vlarl_fast.compat.verl import (compute_policy_loss, agg_loss, compute_grpo_outcome_advantage,
                                        logprobs_from_logits, entropy_from_logits, masked_mean)

Reproduced exactly from veRL: log-ratio clamped to +-20 before exp, dual clip (clip_ratio_c,
which must be > 1) only where the advantage is negative, clipped tokens counted with a strict
`>`, masked means divided by `mask.sum() + 1e-8`, group-of-one advantages use mean 0 / std 1.
Deliberate differences (where veRL returns NaN): a sequence without valid tokens contributes 0
to "seq-mean-token-mean"; masked-out positions holding inf/NaN are ignored instead of
propagating. "token-mean-unbiased" is not provided (ValueError).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlarl_fast.kernels.advantage import grpo_outcome_advantage
from vlarl_fast.kernels.grpo_loss import grpo_loss
from vlarl_fast.kernels.reference import AGG_MODES, MASKED_MEAN_EPS, token_weights

__all__ = [
    "agg_loss",
    "compute_grpo_outcome_advantage",
    "compute_policy_loss",
    "entropy_from_logits",
    "logprobs_from_logits",
    "masked_mean",
]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis=None) -> torch.Tensor:
    """veRL's verl_F.masked_mean: sum(values * mask) / (sum(mask) + 1e-8)."""
    if axis is None:
        return (values * mask).sum() / (mask.sum() + MASKED_MEAN_EPS)
    return (values * mask).sum(axis) / (mask.sum(axis) + MASKED_MEAN_EPS)


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str) -> torch.Tensor:
    """Aggregates a [B, L] loss matrix into a scalar (modes: see vlarl_fast.kernels.AGG_MODES)."""
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode must be one of {AGG_MODES}, got {loss_agg_mode!r}")
    if loss_mat.shape != loss_mask.shape or loss_mat.dim() != 2:
        raise ValueError(f"loss_mat and loss_mask must both be [B, L], got {tuple(loss_mat.shape)} "
                         f"and {tuple(loss_mask.shape)}")
    mask = loss_mask.to(loss_mat.dtype)
    values = torch.where(loss_mask != 0, loss_mat, torch.zeros_like(loss_mat))
    return (token_weights(mask, loss_agg_mode) * values).sum()


def compute_policy_loss(old_log_prob, log_prob, advantages, response_mask, cliprange=None,
                        cliprange_low=None, cliprange_high=None, clip_ratio_c=3.0,
                        loss_agg_mode: str = "token-mean"):
    """veRL's compute_policy_loss (dual-clip PPO). Returns (pg_loss, pg_clipfrac, ppo_kl,
    pg_clipfrac_lower); one fused pass (Triton on CUDA, PyTorch elsewhere)."""
    clip_low = cliprange if cliprange_low is None else cliprange_low
    clip_high = cliprange if cliprange_high is None else cliprange_high
    if clip_low is None or clip_high is None:
        raise ValueError(f"cliprange, or both cliprange_low and cliprange_high, must be given; got "
                         f"cliprange={cliprange}, cliprange_low={cliprange_low}, "
                         f"cliprange_high={cliprange_high}")
    if clip_ratio_c is None or not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c (dual-clip lower bound) must be > 1.0, got {clip_ratio_c}")
    loss, stats = grpo_loss(log_prob, old_log_prob, advantages, response_mask,
                            clip_low=float(clip_low), clip_high=float(clip_high),
                            clip_c=float(clip_ratio_c), agg=loss_agg_mode)
    return loss, stats["clipfrac"], stats["ppo_kl"], stats["clipfrac_lower"]


def _group_ids(index, n: int, device) -> torch.Tensor:
    """Maps veRL's `index` (np.ndarray / list of uids, strings or ints) to integer group ids."""
    if isinstance(index, torch.Tensor) and not index.is_floating_point():
        ids = index.to(device)
    else:
        values = index.tolist() if isinstance(index, np.ndarray) else list(index)
        first_seen: dict = {}
        ids = torch.tensor([first_seen.setdefault(v, len(first_seen)) for v in values],
                           dtype=torch.long, device=device)
    if ids.shape != (n,):
        raise ValueError(f"index must have {n} entries (one per response), got shape {tuple(ids.shape)}")
    return ids


def compute_grpo_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                   index: np.ndarray | Sequence | torch.Tensor,
                                   epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True,
                                   config=None):
    """veRL's GRPO outcome advantage: rewards summed per response, normalised within groups
    sharing an `index`; returns (advantages, returns), both [B, L] and masked."""
    if token_level_rewards.dim() != 2 or token_level_rewards.shape != response_mask.shape:
        raise ValueError(f"token_level_rewards and response_mask must both be [B, L], got "
                         f"{tuple(token_level_rewards.shape)} and {tuple(response_mask.shape)}")
    scores = token_level_rewards.sum(dim=-1)
    groups = _group_ids(index, scores.shape[0], scores.device)
    with torch.no_grad():
        adv = grpo_outcome_advantage(scores, groups, epsilon=epsilon,
                                     norm_by_std=norm_adv_by_std_in_grpo)
        adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, inplace_backward=True):
    """veRL's logprobs_from_logits: log-softmax over the full last dim gathered at labels
    ([..., V], [...] -> [...] in fp32). `inplace_backward` is accepted for signature
    compatibility. For action bins use vlarl_fast.kernels.action_logprob_from_logits."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:-1])}, got {tuple(labels.shape)}")
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return -F.cross_entropy(flat, labels.reshape(-1).long(), reduction="none").view(labels.shape)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """veRL's entropy_from_logits: logsumexp(x) - sum(softmax(x) * x) over the last dim."""
    x = logits.float()
    p = torch.softmax(x, dim=-1)
    return torch.logsumexp(x, dim=-1) - (p * x).sum(-1)
