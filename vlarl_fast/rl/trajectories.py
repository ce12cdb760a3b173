"""Compact trajectory storage: what a GRPO update needs and nothing more.

Per trajectory b with T chunk slots (K control steps and K*D action tokens each):
    images    uint8   [B, T, n, S, S, 3]  the model input each chunk's action was sampled from: the
                                          frames after the policy's image pipeline (`ModelImages`),
                                          fed to the update as they are
    tokens    uint8   [B, T, K*D]         action-bin indices (0..255 fit a byte)
    logp      float32 [B, T, K*D]         rollout log-probs (the PPO "old" log-probs)
    executed  uint8   [B, T]              control steps of each chunk that ran (0..K)
    task_ids  int64   [B], group_ids int64 [B], success bool [B]
    proprio   float32 [B, T, P]           robot state each chunk was sampled with (policies with
                                          use_proprio only; None otherwise)
Tokens of steps that never ran (after the episode's last executed step) are masked out of the
loss: `token_mask()` expands `executed` to [B, T, K*D]. Compare SimpleVLA-RL, which keeps the float32
model input for all 512 steps of every episode.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class TrajectoryBatch:
    images: np.ndarray
    tokens: np.ndarray
    logp: np.ndarray
    executed: np.ndarray
    task_ids: np.ndarray
    group_ids: np.ndarray
    success: np.ndarray
    action_dim: int = 7  # tokens are step-major: K steps x action_dim dims
    proprio: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "action_dim" and getattr(self, f.name) is not None}

    def __post_init__(self) -> None:
        b = self.images.shape[0]
        for name, arr in self.arrays().items():
            if arr.shape[0] != b:
                raise ValueError(f"TrajectoryBatch.{name}: expected leading dim {b}, got shape {arr.shape}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_chunks(self) -> int:
        return self.images.shape[1]

    @property
    def chunk_len(self) -> int:
        return self.tokens.shape[2] // self.action_dim

    def token_mask(self) -> np.ndarray:
        """bool [B, T, K*D]: token (k, d) of chunk t counts iff step k of chunk t was executed."""
        k = self.tokens.shape[2] // self.action_dim
        step = np.repeat(np.arange(k), self.action_dim)  # [K*D]
        return step[None, None, :] < self.executed[:, :, None]

    def env_steps(self) -> int:
        return int(self.executed.sum())

    def lengths(self) -> np.ndarray:
        """Chunks with at least one executed step, per trajectory."""
        return (self.executed > 0).sum(axis=1)

    def select(self, index) -> "TrajectoryBatch":
        index = np.asarray(index)
        return TrajectoryBatch(**{k: v[index] for k, v in self.arrays().items()}, action_dim=self.action_dim)

    @staticmethod
    def concat(batches: list["TrajectoryBatch"]) -> "TrajectoryBatch":
        if not batches:
            raise ValueError("TrajectoryBatch.concat: expected at least one batch, got none")
        t = max(b.num_chunks for b in batches)
        padded = [b.pad_chunks(t) for b in batches]
        names = padded[0].arrays().keys()
        return TrajectoryBatch(**{k: np.concatenate([b.arrays()[k] for b in padded]) for k in names},
                               action_dim=batches[0].action_dim)

    def pad_chunks(self, t: int) -> "TrajectoryBatch":
        extra = t - self.num_chunks
        if extra <= 0:
            return self

        def pad(a):
            return np.concatenate([a, np.zeros((a.shape[0], extra, *a.shape[2:]), a.dtype)], axis=1)

        return TrajectoryBatch(images=pad(self.images), tokens=pad(self.tokens), logp=pad(self.logp),
                               executed=pad(self.executed), task_ids=self.task_ids,
                               group_ids=self.group_ids, success=self.success, action_dim=self.action_dim,
                               proprio=None if self.proprio is None else pad(self.proprio))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())

    def bytes_per_trajectory(self) -> float:
        return self.nbytes() / max(len(self), 1)

    def footprint(self) -> dict[str, int]:
        """Bytes held per array (what `bench grpo` and the trainer report)."""
        return {k: int(a.nbytes) for k, a in self.arrays().items()}

    def torch_tokens(self) -> torch.Tensor:
        return torch.from_numpy(self.tokens.astype(np.int64))
