"""SimpleVLA-RL's loss-side functions with its own signatures and semantics.

SimpleVLA-RL (PRIME-RL/SimpleVLA-RL) vendors an early veRL whose `core_algos` differs from
upstream veRL (`vlarl_fast.compat.verl`): no log-ratio clamp, no dual clip, one aggregation
(token mean), three return values. Its trainer calls, from `verl/trainer/ppo/core_algos.py`,
`compute_policy_loss` (workers/actor/dp_rob.py), `compute_grpo_outcome_advantage`
(trainer/ppo/ray_trainer.py) and `kl_penalty`, and from `verl/utils/torch_functional.py`
`logprobs_from_logits`, `entropy_from_logits` and `masked_mean`. Switch by import:

    # from verl.trainer.ppo import core_algos                   (dp_rob.py, ray_trainer.py)
    # import verl.utils.torch_functional as verl_F
    # from verl.utils.torch_functional import logprobs_from_logits
    from vlarl_fast.compat import simplevla as core_algos
    from vlarl_fast.compat import simplevla as verl_F
    from vlarl_fast.compat.simplevla import logprobs_from_logits

The maths, exactly SimpleVLA-RL's (tested against a restatement of its code):
    compute_policy_loss: d = log_prob - old_log_prob (no clamp), r = exp(d),
        pg_loss = masked_mean(max(-A r, -A clamp(r, 1 - clip_ratio_low, 1 + clip_ratio_high))),
        pg_clipfrac = masked_mean(-A clamp(..) > -A r), ppo_kl = masked_mean(-d).
    masked_mean(v, m) = sum(v m) / sum(m), or sum(v m) when the whole mask is False (so an
        all-masked call gives 0, and a row without valid tokens gives 0/0 = NaN with `axis`).
        SimpleVLA-RL tests the mask on the host; here the same result comes without a sync.
    compute_grpo_outcome_advantage: scores = rewards summed over the row (unmasked), per group
        of equal `index`: (s - mean) / (std + epsilon), unbiased std; a group of one uses
        mean 0, std 1 (a float32 tensor: 1 + epsilon is rounded to float32 even for float64
        scores); broadcast over the row and multiplied by eos_mask; returned twice.
As in SimpleVLA-RL, inf/NaN at masked positions propagate into compute_policy_loss (its
dp_rob.py zeroes masked log-probs first), and |d| > 88 overflows exp in fp32.

Backing: compute_grpo_outcome_advantage runs on the vectorised `grpo_outcome_advantage` kernel
(no per-row Python loop); logprobs_from_logits / entropy_from_logits of the 256 action bins on
the fused action log-prob kernel (one pass over the logits; fp32 results, as SimpleVLA-RL gets
under its bf16 autocast); `logprobs_and_entropy_from_logits` gives both from that one pass.
compute_policy_loss is plain torch: the fused GRPO loss clamps the log-ratio at +-20, ignores
masked garbage and divides by sum(mask) + 1e-8, so it is not SimpleVLA-RL's function.
One deliberate difference: an integer torch.Tensor `index` is grouped by value; SimpleVLA-RL's
dict hashes tensor elements by identity, which makes every row its own group (its trainer passes
a numpy array of uids, grouped by value in both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vlarl_fast.compat import verl as _verl
from vlarl_fast.kernels.action_logprob import MAX_TRITON_BINS

__all__ = [
    "compute_entropy_loss",
    "compute_grpo_outcome_advantage",
    "compute_policy_loss",
    "entropy_from_logits",
    "kl_penalty",
    "logprobs_and_entropy_from_logits",
    "logprobs_from_logits",
    "masked_mean",
]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis=None) -> torch.Tensor:
    """SimpleVLA-RL's verl_F.masked_mean: sum(values * mask) / sum(mask), or the bare sum when
    the mask is False everywhere (no host sync: the divisor becomes 1 then)."""
    total = (values * mask).sum(axis=axis)
    count = mask.sum(axis=axis)
    return total / torch.where(mask.any(), count, torch.ones_like(count))


def compute_policy_loss(old_log_prob, log_prob, advantages, eos_mask, clip_ratio_high,
                        clip_ratio_low):
    """SimpleVLA-RL's clip-higher PPO surrogate. [B, L] inputs; returns (pg_loss, pg_clipfrac,
    ppo_kl), scalars with SimpleVLA-RL's autograd graph (gradient into log_prob)."""
    negative_approx_kl = log_prob - old_log_prob
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl, eos_mask)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), eos_mask)
    pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses).float(), eos_mask)
    return pg_loss, pg_clipfrac, ppo_kl


def compute_grpo_outcome_advantage(token_level_rewards: torch.Tensor, eos_mask: torch.Tensor,
                                   index: np.ndarray | Sequence | torch.Tensor,
                                   epsilon: float = 1e-6):
    """SimpleVLA-RL's GRPO advantage (always divided by std + epsilon). Returns (advantages,
    returns), the same [B, L] tensor twice, in the rewards' dtype (promoted with eos_mask's)."""
    if token_level_rewards.dim() != 2 or token_level_rewards.shape != eos_mask.shape:
        raise ValueError(f"token_level_rewards and eos_mask must both be [B, L], got "
                         f"{tuple(token_level_rewards.shape)} and {tuple(eos_mask.shape)}")
    scores = token_level_rewards.sum(dim=-1)
    with torch.no_grad():
        adv = _verl.grpo_scalar_advantage(scores, index, epsilon, norm_by_std=True)
        adv = adv.unsqueeze(-1).tile([1, token_level_rewards.shape[-1]]) * eos_mask
    return adv, adv


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty) -> torch.Tensor:
    """SimpleVLA-RL's kl_penalty: "kl" d, "abs" |d|, "mse" d^2 / 2 with d = logprob - ref;
    "full" and anything else raise NotImplementedError."""
    if kl_penalty == "kl":
        return logprob - ref_logprob
    if kl_penalty == "abs":
        return (logprob - ref_logprob).abs()
    if kl_penalty == "mse":
        return 0.5 * (logprob - ref_logprob).square()
    raise NotImplementedError(f"kl_penalty {kl_penalty!r}: SimpleVLA-RL implements 'kl', 'abs' "
                              "and 'mse'")


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log-softmax over the last dim gathered at labels ([..., V], [...] -> [...] fp32, fp64
    for fp64 logits). dp_rob.py passes the 256 action-bin logits already divided by the
    temperature; they run on the fused kernel."""
    return _verl.logprobs_from_logits(logits, labels)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp(x) - sum(softmax(x) x) over the last dim ([..., V] -> [...] fp32, fp64 for
    fp64 logits)."""
    return _verl.entropy_from_logits(logits)


def logprobs_and_entropy_from_logits(logits: torch.Tensor, labels: torch.Tensor):
    """(logprobs_from_logits(logits, labels), entropy_from_logits(logits)) in one fused pass:
    the two lines of dp_rob.py that read the action-bin logits twice."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:-1])}, got "
                         f"{tuple(labels.shape)}")
    if logits.dim() < 2 or logits.shape[-1] > MAX_TRITON_BINS:
        return logprobs_from_logits(logits, labels), entropy_from_logits(logits)
    return _verl.fused_logprob_entropy(logits, labels, return_entropy=True)


def compute_entropy_loss(logits: torch.Tensor, eos_mask: torch.Tensor) -> torch.Tensor:
    """SimpleVLA-RL's compute_entropy_loss: masked_mean(entropy_from_logits(logits), eos_mask)."""
    return masked_mean(entropy_from_logits(logits), eos_mask)
