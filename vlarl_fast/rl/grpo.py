"""GRPO pieces: outcome advantages per group and SimpleVLA-RL's dynamic-sampling filter.

Reward: 1 for a successful episode, 0 otherwise. Advantage: (r - group mean) / (unbiased group std
+ 1e-6) (`vlarl_fast.kernels.grpo_outcome_advantage`). Dynamic sampling keeps only groups whose
mean accuracy lies in [0.1, 0.9] (SimpleVLA-RL's bounds; groups with mixed outcomes, whose
advantages are non-zero); the trainer samples more groups until the batch is full (see
trainer.collect_batch).
"""

from __future__ import annotations

import numpy as np
import torch

from vlarl_fast.kernels import grpo_outcome_advantage
from vlarl_fast.rl.trajectories import TrajectoryBatch

ADV_EPSILON = 1e-6


def rewards(batch: TrajectoryBatch) -> torch.Tensor:
    return torch.from_numpy(batch.success.astype(np.float32))


def advantages(batch: TrajectoryBatch) -> torch.Tensor:
    """[B] float32 GRPO advantages of the trajectories' binary rewards within their groups."""
    return grpo_outcome_advantage(rewards(batch), torch.from_numpy(batch.group_ids), epsilon=ADV_EPSILON)


def mixed_groups(batch: TrajectoryBatch, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Group ids whose success rate lies strictly between low and high (SimpleVLA-RL's
    `accuracy_lower_bound` / `accuracy_upper_bound` filter with bounds 0 and 1)."""
    groups = np.unique(batch.group_ids)
    rates = np.array([batch.success[batch.group_ids == g].mean() for g in groups])
    return groups[(rates > low) & (rates < high)]


def accuracy_groups(batch: TrajectoryBatch, lower: float = 0.1, upper: float = 0.9) -> np.ndarray:
    """Group ids whose success rate lies in [lower, upper]: SimpleVLA-RL's dynamic-sampling filter
    (`filter_accuracy` with `accuracy_lower_bound` / `accuracy_upper_bound`, bounds inclusive,
    ray_trainer.py `filter`). With the default bounds and groups of up to 9 samples this keeps
    exactly the groups with mixed outcomes."""
    groups, inverse = np.unique(batch.group_ids, return_inverse=True)
    rates = np.bincount(inverse, weights=batch.success.astype(np.float64)) / np.bincount(inverse)
    return groups[(rates >= lower) & (rates <= upper)]


def keep_groups(batch: TrajectoryBatch, groups: np.ndarray) -> TrajectoryBatch:
    return batch.select(np.nonzero(np.isin(batch.group_ids, groups))[0])
