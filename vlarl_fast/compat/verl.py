"""veRL 0.9.1 drop-ins backed by the fused kernels; importable without veRL installed.

Switch by import:

    # from verl.trainer.ppo.core_algos import (agg_loss, compute_policy_loss,
    #     compute_policy_loss_vanilla, compute_grpo_outcome_advantage, compute_entropy_loss)
    # from verl.utils.torch_functional import (logprobs_from_logits, entropy_from_logits,
    #     masked_mean, masked_sum)
    from vlarl_fast.compat.verl import (agg_loss, compute_policy_loss, compute_policy_loss_vanilla,
        compute_grpo_outcome_advantage, compute_entropy_loss, logprobs_from_logits,
        entropy_from_logits, masked_mean, masked_sum)

or, for veRL's actor (which looks its policy loss up by name at every update):

    from verl.trainer.ppo import core_algos
    core_algos.POLICY_LOSS_REGISTRY["vanilla"] = compute_policy_loss_vanilla

Same signatures and the same numbers as veRL 0.9.1 (tests/compat/test_verl_compat.py runs both
on the same inputs, veRL installed from PyPI): log-ratio clamped to +-20 before exp; dual clip
(clip_ratio_c > 1) only where the advantage is negative; clipped tokens counted with a strict
`>`; masked means divide by `mask.sum() + 1e-8`; masked-out values (inf/NaN included) never reach
a masked sum (veRL's `masked_sum`); group-of-one advantages use mean 0 / std 1, the divisor
1 + epsilon rounded to float32 even for float64 scores (veRL's std there is the float32
`torch.tensor(1.0)`); the five aggregation modes of veRL 0.9.1's `agg_loss`: "token-mean" (masked
sum / number of valid tokens, or `batch_num_tokens`, * dp_size), "token-sum" (masked sum *
dp_size), and "seq-mean-token-sum", "seq-mean-token-sum-norm" (then divided by
`loss_scale_factor`, default L), "seq-mean-token-mean" (each sequence's sum divided by its token
count + 1e-8): the sum over sequences with at least one valid token divided by their number (or
`global_batch_size`) * dp_size, so fully masked sequences are left out of the mean.
compute_policy_loss(_vanilla) runs as one fused pass (Triton on CUDA, its PyTorch twin elsewhere)
for float32/bf16 inputs, equal to veRL to float32 rounding (another summation order); float64
inputs, per-token `rollout_is_weights` and clip ranges outside [0, 1) x [0, inf) take veRL's
term-by-term path, bit-identical to veRL.

Where veRL 0.9.1 returns NaN, and only there, the result here is finite:
- A micro-batch without any valid token: veRL's token-mean and seq-mean-* modes divide 0 by 0
  when `batch_num_tokens` / `global_batch_size` are not given (NaN loss, NaN gradients); here the
  loss is 0 with a zero gradient (what veRL gives when those counts are passed).
- Masked-out inf/NaN in the seq-mean-* modes: veRL sums `loss_mat * loss_mask` per sequence there
  (not `masked_sum`), so an inf/NaN at a masked position of a sequence with valid tokens makes the
  loss NaN; here it is ignored, as veRL's token-mean and token-sum already do. The loss is what
  veRL returns after the masked positions are set to 0.
- Gradients of compute_policy_loss(_vanilla) at masked positions: veRL's backward multiplies the
  zero gradient of a masked token by its advantage, so an inf/NaN advantage there gives a NaN
  gradient into `log_prob` (and so into the model); here masked positions get gradient 0.
Other notes: the statistics returned by compute_policy_loss are detached tensors (veRL's carry
a graph nobody differentiates); invalid clip settings raise ValueError where veRL asserts;
`logprobs_from_logits` / `entropy_from_logits` of bf16/fp16 logits return fp32 (veRL's
flash-attention path does so for log-probs; its pure-torch path computes in bf16 and rounds:
these are the same values before that rounding), fp32/fp64 logits give their own dtype; an int
`torch.Tensor` index for compute_grpo_outcome_advantage is grouped by value (veRL expects a numpy
array; a torch tensor there is hashed by identity, every row its own group).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlarl_fast.kernels.action_logprob import MAX_TRITON_BINS, action_logprob_from_logits
from vlarl_fast.kernels.advantage import grpo_outcome_advantage
from vlarl_fast.kernels.grpo_loss import grpo_loss

__all__ = [
    "AGG_MODES",
    "agg_loss",
    "compute_entropy_loss",
    "compute_grpo_outcome_advantage",
    "compute_policy_loss",
    "compute_policy_loss_vanilla",
    "entropy_from_logits",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
]

AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm",
             "seq-mean-token-mean")
_SEQ_MODES = ("seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean")
_FULL_PRECISION = (torch.float32, torch.float64)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, axis=None) -> torch.Tensor:
    """veRL's masked_sum: sum(where(mask, values, 0) * mask); masked inf/NaN cannot leak."""
    return (torch.where(mask.bool(), values, 0.0) * mask).sum(axis=axis)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis=None) -> torch.Tensor:
    """veRL's masked_mean: masked_sum(values, mask) / (sum(mask) + 1e-8)."""
    return masked_sum(values, mask, axis) / (mask.sum(axis=axis) + 1e-8)


def _nonzero_or_one(count: torch.Tensor) -> torch.Tensor:
    """A computed count used as a divisor: 1 where it is 0 (the numerator is then 0 too)."""
    return torch.where(count != 0, count, torch.ones_like(count))


def _check_mode(loss_agg_mode: str) -> None:
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"Invalid loss_agg_mode: {loss_agg_mode!r}; loss_agg_mode must be one of "
                         f"{AGG_MODES}")


def _scale(total: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str, dp_size: int,
           batch_num_tokens, global_batch_size, loss_scale_factor) -> torch.Tensor:
    """veRL's agg_loss after the numerator: `total` is the masked token sum (token modes) or the
    sum of per-sequence values over non-empty sequences (seq-mean-* modes)."""
    if loss_agg_mode == "token-mean":
        if batch_num_tokens is None:
            if dp_size > 1:
                raise ValueError("(global) batch_num_tokens is required when dp_size > 1")
            batch_num_tokens = _nonzero_or_one(loss_mask.sum())
        return total / batch_num_tokens * dp_size
    if loss_agg_mode == "token-sum":
        return total * dp_size
    if global_batch_size is None:
        if dp_size > 1:
            raise ValueError("global_batch_size is required when dp_size > 1")
        global_batch_size = _nonzero_or_one((torch.sum(loss_mask, dim=-1) > 0).float().sum())
    loss = total / global_batch_size * dp_size
    if loss_agg_mode == "seq-mean-token-sum-norm":
        loss = loss / (loss_mask.shape[-1] if loss_scale_factor is None else loss_scale_factor)
    return loss


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str,
             dp_size: int = 1, batch_num_tokens=None, global_batch_size=None,
             loss_scale_factor=None) -> torch.Tensor:
    """veRL 0.9.1's agg_loss: a [B, L] loss matrix -> scalar, modes in AGG_MODES."""
    _check_mode(loss_agg_mode)
    if loss_mat.shape != loss_mask.shape or loss_mat.dim() != 2:
        raise ValueError(f"loss_mat and loss_mask must both be [B, L], got {tuple(loss_mat.shape)} "
                         f"and {tuple(loss_mask.shape)}")
    if loss_agg_mode in _SEQ_MODES:
        seq_losses = masked_sum(loss_mat, loss_mask, axis=-1)
        token_count = torch.sum(loss_mask, dim=-1)
        if loss_agg_mode == "seq-mean-token-mean":
            seq_losses = seq_losses / (token_count + 1e-8)
        total = masked_sum(seq_losses, (token_count > 0).float())
    else:
        total = masked_sum(loss_mat, loss_mask)
    return _scale(total, loss_mask, loss_agg_mode, dp_size, batch_num_tokens, global_batch_size,
                  loss_scale_factor)


def _policy_loss_torch(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                       clip_ratio_c, rollout_is_weights):
    """veRL's clipped surrogate term by term, masked positions set to 0 before any arithmetic.
    Returns (pg_losses [B, L], pg_clipfrac, ppo_kl, pg_clipfrac_lower)."""
    valid = response_mask.bool()
    log_prob = torch.where(valid, log_prob, 0.0)
    old_log_prob = torch.where(valid, old_log_prob, 0.0)
    advantages = torch.where(valid, advantages, 0.0)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, response_mask)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_clipfrac_lower = masked_mean(
        torch.gt(clip_pg_losses1, pg_losses3) * (advantages < 0).float(), response_mask)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * torch.where(valid, rollout_is_weights, 0.0)
    return pg_losses, pg_clipfrac.detach(), ppo_kl.detach(), pg_clipfrac_lower.detach()


def _fused_applies(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                   rollout_is_weights) -> bool:
    """The fused kernel takes the call: same-shape 2-D inputs, no per-token weights, clip ranges
    it accepts, not fp64 (the fp64 path is the term-by-term one, exact to veRL's rounding)."""
    return (rollout_is_weights is None and log_prob.dim() == 2
            and log_prob.dtype != torch.float64
            and old_log_prob.shape == log_prob.shape == advantages.shape == response_mask.shape
            and 0.0 <= clip_low < 1.0 and clip_high >= 0.0)


def _policy_loss(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                 clip_ratio_c, loss_agg_mode, agg_kwargs, rollout_is_weights=None):
    _check_mode(loss_agg_mode)
    if clip_low is None or clip_high is None:
        raise ValueError(f"cliprange, or both cliprange_low and cliprange_high, must be given; got "
                         f"cliprange_low={clip_low}, cliprange_high={clip_high}")
    if clip_ratio_c is None or not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c (dual-clip lower bound) must be > 1.0, got {clip_ratio_c}")
    clip_low, clip_high, clip_ratio_c = float(clip_low), float(clip_high), float(clip_ratio_c)
    if _fused_applies(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                      rollout_is_weights):
        # kernel loss = (1/B) sum_b r_b with r_b the row's masked token sum (or, for
        # seq-mean-token-mean, its token mean; empty rows 0): times B it is agg_loss's numerator
        kernel_mode = "seq-mean-token-mean" if loss_agg_mode == "seq-mean-token-mean" \
            else "seq-mean-token-sum"
        loss, stats = grpo_loss(log_prob, old_log_prob, advantages, response_mask,
                                clip_low=clip_low, clip_high=clip_high, clip_c=clip_ratio_c,
                                agg=kernel_mode)
        pg_loss = _scale(loss * log_prob.shape[0], response_mask, loss_agg_mode, **agg_kwargs)
        return pg_loss, stats["clipfrac"], stats["ppo_kl"], stats["clipfrac_lower"]
    pg_losses, clipfrac, ppo_kl, clipfrac_lower = _policy_loss_torch(
        old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high, clip_ratio_c,
        rollout_is_weights)
    pg_loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **agg_kwargs)
    return pg_loss, clipfrac, ppo_kl, clipfrac_lower


def _agg_kwargs(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None):
    return dict(dp_size=dp_size, batch_num_tokens=batch_num_tokens,
                global_batch_size=global_batch_size, loss_scale_factor=loss_scale_factor)


def compute_policy_loss(old_log_prob, log_prob, advantages, response_mask, cliprange=None,
                        cliprange_low=None, cliprange_high=None, clip_ratio_c=3.0,
                        loss_agg_mode: str = "token-mean"):
    """veRL's compute_policy_loss (dual-clip PPO; deprecated in veRL 0.9.1 for
    compute_policy_loss_vanilla). Returns (pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower);
    one fused pass (Triton on CUDA, PyTorch elsewhere)."""
    clip_low = cliprange if cliprange_low is None else cliprange_low
    clip_high = cliprange if cliprange_high is None else cliprange_high
    return _policy_loss(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                        clip_ratio_c, loss_agg_mode, _agg_kwargs())


def _config_value(config, key: str, default=None):
    """config.get(key, default) for veRL's ActorConfig, an omegaconf DictConfig or a dict;
    getattr for any other object."""
    get = getattr(config, "get", None)
    if callable(get):
        return get(key, default)
    return getattr(config, key, default)


def compute_policy_loss_vanilla(old_log_prob: torch.Tensor, log_prob: torch.Tensor,
                                advantages: torch.Tensor, response_mask: torch.Tensor,
                                loss_agg_mode: str = "token-mean", config=None,
                                rollout_is_weights: torch.Tensor | None = None):
    """veRL 0.9.1's registered "vanilla" policy loss: clip ranges from `config` (clip_ratio,
    clip_ratio_low, clip_ratio_high, clip_ratio_c default 3.0), aggregation counts from
    `config.global_batch_info`. Returns (pg_loss, {"actor/pg_clipfrac", "actor/ppo_kl",
    "actor/pg_clipfrac_lower"} as Python floats)."""
    if config is None:
        raise ValueError("config (veRL's ActorConfig, or any object/dict with clip_ratio, "
                         "clip_ratio_low, clip_ratio_high) is required")
    clip_ratio = _config_value(config, "clip_ratio")
    clip_low = _config_value(config, "clip_ratio_low")
    clip_high = _config_value(config, "clip_ratio_high")
    clip_low = clip_ratio if clip_low is None else clip_low
    clip_high = clip_ratio if clip_high is None else clip_high
    clip_ratio_c = _config_value(config, "clip_ratio_c", 3.0)
    agg_kwargs = _agg_kwargs(**dict(_config_value(config, "global_batch_info", None) or {}))
    pg_loss, clipfrac, ppo_kl, clipfrac_lower = _policy_loss(
        old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high, clip_ratio_c,
        loss_agg_mode, agg_kwargs, rollout_is_weights)
    metrics = {"actor/pg_clipfrac": clipfrac.item(), "actor/ppo_kl": ppo_kl.item(),
               "actor/pg_clipfrac_lower": clipfrac_lower.item()}
    return pg_loss, metrics


def _group_ids(index, n: int, device) -> torch.Tensor:
    """Maps veRL's `index` (np.ndarray / list of uids, strings or ints) to integer group ids."""
    if isinstance(index, torch.Tensor) and not index.is_floating_point():
        ids = index.to(device)
    else:
        values = index.tolist() if isinstance(index, (np.ndarray, torch.Tensor)) else list(index)
        first_seen: dict = {}
        ids = torch.tensor([first_seen.setdefault(v, len(first_seen)) for v in values],
                           dtype=torch.long, device=device)
    if ids.shape != (n,):
        raise ValueError(f"index must have {n} entries (one per response), got shape "
                         f"{tuple(ids.shape)}")
    return ids


def grpo_scalar_advantage(scores: torch.Tensor, index, epsilon: float, norm_by_std: bool):
    """Per-response GRPO advantage [B] of scores [B] grouped by `index`, as veRL's (and
    SimpleVLA-RL's) loop computes it, on the vectorised kernel."""
    groups = _group_ids(index, scores.shape[0], scores.device)
    adv = grpo_outcome_advantage(scores, groups, epsilon=epsilon, norm_by_std=norm_by_std)
    if norm_by_std and scores.dtype == torch.float64 and scores.numel():
        # their group of one has std torch.tensor(1.0), a float32 0-d tensor: the divisor
        # 1 + epsilon is rounded to float32 even for float64 scores (in float32 nothing changes)
        _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
        one_plus_eps = float(torch.tensor(1.0) + epsilon)
        adv = torch.where(counts[inverse] == 1, scores / one_plus_eps, adv)
    return adv


def compute_grpo_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor,
                                   index: np.ndarray | Sequence | torch.Tensor,
                                   epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True,
                                   config=None):
    """veRL's GRPO outcome advantage: rewards summed per response, normalised within groups
    sharing an `index` (unbiased std; a group of one has mean 0, std 1); returns (advantages,
    returns), the same [B, L] tensor twice, multiplied by the mask. Vectorised (no loop over B)."""
    if token_level_rewards.dim() != 2 or token_level_rewards.shape != response_mask.shape:
        raise ValueError(f"token_level_rewards and response_mask must both be [B, L], got "
                         f"{tuple(token_level_rewards.shape)} and {tuple(response_mask.shape)}")
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        adv = grpo_scalar_advantage(scores, index, epsilon, norm_adv_by_std_in_grpo)
        adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


def _fused_logits_ok(logits: torch.Tensor) -> bool:
    return logits.dim() >= 2 and logits.shape[-1] <= MAX_TRITON_BINS


def fused_logprob_entropy(logits: torch.Tensor, labels: torch.Tensor, return_entropy: bool):
    """The action log-prob kernel over all of the last dim at temperature 1: [..., V] -> [...]
    (and the entropy). The tokens are flattened here, the leading shape restored after."""
    lead, n = logits.shape[:-1], logits.shape[-1]
    out = action_logprob_from_logits(logits.reshape(-1, n), labels.reshape(-1), temperature=1.0,
                                     bin_start=0, bin_end=n, return_entropy=return_entropy)
    if return_entropy:
        return out[0].reshape(lead), out[1].reshape(lead)
    return out.reshape(lead)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, inplace_backward=True):
    """veRL's logprobs_from_logits: log-softmax over the last dim gathered at labels
    ([..., V], [...] -> [...]). V <= 1024 (action bins): the fused kernel (one pass). Larger V:
    veRL's row-looped logsumexp (its peak memory), fp32 rows for half inputs.
    `inplace_backward` is accepted for signature compatibility."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:-1])}, got "
                         f"{tuple(labels.shape)}")
    if _fused_logits_ok(logits):
        return fused_logprob_entropy(logits, labels, return_entropy=False)
    if logits.dtype in _FULL_PRECISION:
        picked = torch.gather(logits, dim=-1, index=labels.long().unsqueeze(-1)).squeeze(-1)
        return picked - torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
    return torch.stack([F.log_softmax(row.float(), dim=-1).gather(-1, lab.long()[..., None])[..., 0]
                        for row, lab in zip(logits, labels, strict=True)])


def _entropy_torch(logits: torch.Tensor) -> torch.Tensor:
    x = logits if logits.dtype in _FULL_PRECISION else logits.float()
    pd = torch.softmax(x, dim=-1)
    return torch.logsumexp(x, dim=-1) - torch.sum(pd * x, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """veRL's entropy_from_logits: logsumexp(x) - sum(softmax(x) * x) over the last dim
    ([..., V] -> [...]); the fused kernel for V <= 1024."""
    if _fused_logits_ok(logits):
        labels = torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device)
        return fused_logprob_entropy(logits, labels, return_entropy=True)[1]
    return _entropy_torch(logits)


def compute_entropy_loss(logits: torch.Tensor, response_mask: torch.Tensor,
                         loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """veRL's compute_entropy_loss: agg_loss(entropy_from_logits(logits), response_mask, mode)."""
    return agg_loss(entropy_from_logits(logits), response_mask, loss_agg_mode)
