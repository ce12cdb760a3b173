"""The one interface every task family's environments implement for the rollout loop.

    env.reset(states, tasks, env_ids)                 -> frames uint8 [n, C, H, W, 3]
    env.step_chunk(actions [n, K, 7], env_ids)        -> ChunkResult
    env.proprio(env_ids)                              -> [n, P] float64 robot state, or None
    env.num_envs, env.close()

A task is anything with `name` and `instruction` (the built-in `Task`, LIBERO's `LiberoTask`).
`states` are robosuite flattened MuJoCo states ([time, qpos, qvel]) from which episodes start, one
row per env: an [n, S] array, or a list of rows when tasks differ in model (LIBERO tasks do).
Episode rules (every family): an env is done when its task's goal holds after a control step
(the rest of that chunk is not executed) or when it has executed the episode's step limit; a
done env executes nothing until it is reset. `vlarl_fast.rl.rollout` and `vlarl_fast.rl.evaluate`
drive every family through this interface, for `train` and `eval` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass
class ChunkResult:
    """What one `step_chunk` call returns; rows are the envs of the call, in order."""

    executed: np.ndarray  # [n] int: control steps executed in this call (0..K)
    success: np.ndarray  # [n] bool: the episode's goal holds (reached in this chunk or before)
    done: np.ndarray  # [n] bool: the episode is over (success or step limit)
    frames: np.ndarray | None  # uint8 [n, C, H, W, 3] after the chunk (zeros where done), or None
    episode_steps: np.ndarray | None = None  # [n] int: control steps of the episode so far
    proprio: np.ndarray | None = None  # [n, P] robot state after the chunk (families that have one)


class Task(Protocol):
    name: str
    instruction: str


class ChunkEnv(Protocol):
    num_envs: int

    def reset(self, states, tasks: Sequence[Task], env_ids=None) -> np.ndarray: ...

    def step_chunk(self, actions: np.ndarray, env_ids=None) -> ChunkResult: ...

    def proprio(self, env_ids=None) -> np.ndarray | None: ...

    def close(self) -> None: ...


class EpisodeBook:
    """Per-env episode bookkeeping (steps, done, success, task) for envs that need it."""

    def __init__(self, num_envs: int, max_steps: int):
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.done = np.ones(num_envs, dtype=bool)
        self.success = np.zeros(num_envs, dtype=bool)
        self.tasks: list = [None] * num_envs
        self.max_steps = max_steps

    def start(self, ids: np.ndarray, tasks: Sequence) -> None:
        self.steps[ids] = 0
        self.done[ids] = False
        self.success[ids] = False
        for i, task in zip(ids, tasks):
            self.tasks[i] = task


def repeat_rows(states, n: int):
    """Each initial state `n` times in a row (a GRPO group): an array stays an array, a list of
    rows of different sizes a list."""
    if isinstance(states, np.ndarray):
        return np.repeat(states, n, axis=0)
    return [row for row in states for _ in range(n)]


def env_ids_array(env_ids, num_envs: int) -> np.ndarray:
    """`env_ids` (None: all) as int64 [n], each checked to lie in [0, num_envs)."""
    if env_ids is None:
        return np.arange(num_envs)
    ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= num_envs):
        raise IndexError(f"env_ids must lie in [0, {num_envs}), got {ids.tolist()}")
    return ids
