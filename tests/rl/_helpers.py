"""Shared builders for the rl tests: a tiny policy and a trajectory batch with mixed groups."""

from __future__ import annotations

import numpy as np
import torch

from vlarl_fast.rl.policy_setup import build_policy
from vlarl_fast.rl.trajectories import TrajectoryBatch

INSTRUCTIONS = ["touch the red cube", "touch the green cube", "touch the blue cube"]


def tiny_policy(seed: int = 0, image_size: int = 16):
    return build_policy(image_size, seed)


def sampled_batch(policy, n_groups: int = 4, group_size: int = 4, chunks: int = 2, image: int = 16,
                  seed: int = 0) -> TrajectoryBatch:
    """Random frames (kept as the model input, as the rollout keeps them), tokens sampled from
    `policy` (so old log-probs are the policy's own), mixed outcomes in every group and a
    partially executed last chunk."""
    rng = np.random.default_rng(seed)
    b = n_groups * group_size
    frames = rng.integers(0, 256, size=(b, chunks, 1, image, image, 3), dtype=np.uint8)
    images = np.stack([policy.model_images(frames[:, t]).levels.numpy() for t in range(chunks)], axis=1)
    task_ids = np.repeat(rng.integers(0, len(INSTRUCTIONS), size=n_groups), group_size)
    tokens = np.zeros((b, chunks, 56), dtype=np.uint8)
    logp = np.zeros((b, chunks, 56), dtype=np.float32)
    gen = torch.Generator().manual_seed(seed)
    for t in range(chunks):
        s = policy.sample_actions(frames[:, t], [INSTRUCTIONS[i] for i in task_ids], generator=gen)
        tokens[:, t] = s.tokens.numpy().astype(np.uint8)
        logp[:, t] = s.logp.numpy()
    executed = np.full((b, chunks), 8, dtype=np.uint8)
    executed[:, -1] = rng.integers(1, 9, size=b)
    success = np.zeros(b, dtype=bool)
    success[::2] = True
    return TrajectoryBatch(images=images, tokens=tokens, logp=logp, executed=executed, task_ids=task_ids,
                           group_ids=np.repeat(np.arange(n_groups), group_size), success=success)
