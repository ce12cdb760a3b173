"""The one place the policy turns action-position hidden states into bin log-probs.

Delegates to `vlarl_fast.kernels.action_logprob` (fused Triton on CUDA, PyTorch on CPU); only the
256 action-bin rows of the LM head are read, never the full vocabulary.
"""

from __future__ import annotations

import torch

from vlarl_fast.kernels import action_logprob as _fused_action_logprob


def action_bin_logprob(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, temperature: float,
                       bin_start: int, bin_end: int, return_entropy: bool = False):
    """hidden [..., H], weight [V, H], labels [...] bin indices -> logp [...] fp32 (and entropy)."""
    return _fused_action_logprob(hidden, weight, labels, temperature=temperature, bin_start=bin_start,
                                 bin_end=bin_end, return_entropy=return_entropy)


def action_bin_logits(hidden: torch.Tensor, weight: torch.Tensor, *, temperature: float, bin_start: int,
                      bin_end: int) -> torch.Tensor:
    """Temperature-scaled fp32 logits of the action bins `[..., bin_end - bin_start]` (for sampling)."""
    return (hidden.float() @ weight[bin_start:bin_end].float().T) * (1.0 / temperature)
