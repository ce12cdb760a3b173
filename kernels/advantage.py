"""GRPO outcome advantage: each trajectory's scalar reward normalised within its group.

    A_i = (r_i - mean_g(r)) / (std_g(r) + epsilon)     (std: unbiased, as torch.std)
A group of one trajectory has mean 0 and std 1 (veRL's convention), so A_i = r_i / (1 + epsilon).
With norm_by_std=False the division is skipped (Dr. GRPO). Vectorised: no Python loop over the
batch, works on any device and in float64.
"""

from __future__ import annotations

import torch


def grpo_outcome_advantage(rewards: torch.Tensor, group_ids: torch.Tensor, *,
                           epsilon: float = 1e-6, norm_by_std: bool = True) -> torch.Tensor:
    """rewards [B] float, group_ids [B] integer -> advantages [B] in the rewards' dtype."""
    if not isinstance(rewards, torch.Tensor) or not rewards.is_floating_point():
        raise TypeError(f"rewards must be a floating torch.Tensor, got {getattr(rewards, 'dtype', type(rewards))}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape [B], got {tuple(rewards.shape)}")
    group_ids = torch.as_tensor(group_ids, device=rewards.device)
    if group_ids.shape != rewards.shape:
        raise ValueError(f"group_ids must have shape {tuple(rewards.shape)}, got {tuple(group_ids.shape)}")
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise TypeError(f"group_ids must be integers, got {group_ids.dtype}")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if rewards.numel() == 0:
        return rewards.clone()

    _, group = torch.unique(group_ids, return_inverse=True)
    n_groups = int(group.max()) + 1
    r = rewards.detach()
    count = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, group, torch.ones_like(r))
    total = torch.zeros_like(count).index_add_(0, group, r)
    mean = total / count
    centred = r - mean[group]
    sq = torch.zeros_like(count).index_add_(0, group, centred * centred)
    singleton = count < 2
    std = torch.sqrt(sq / torch.where(singleton, torch.ones_like(count), count - 1))
    mean = torch.where(singleton, torch.zeros_like(mean), mean)
    std = torch.where(singleton, torch.ones_like(std), std)
    advantage = r - mean[group]
    if norm_by_std:
        advantage = advantage / (std[group] + epsilon)
    return advantage
