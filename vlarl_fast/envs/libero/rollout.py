"""Running LIBERO episodes with a policy: the loop evaluation and training rollouts share.

    success, steps = run_episodes(batch, policy_fn, init_state_ids=[0, 1, 2], env_ids=[0, 1, 2],
                                  on_chunk=record)

Each call to `policy_fn(images [n, cams, H, W, 3], instructions)` (plus `proprio=[n, 8]` with
use_proprio) returns a chunk `[n, K, 7]` for the envs still running; `on_chunk(env_ids, images,
actions, result)` sees every chunk (training records observations, actions and outcomes there).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from vlarl_fast.envs.libero.batch import LiberoBatch
from vlarl_fast.envs.libero.task_engine import ChunkStep


def run_episodes(batch: LiberoBatch, policy_fn: Callable, init_state_ids: Sequence[int],
                 env_ids: Sequence[int] | None = None, *, use_proprio: bool = False,
                 on_chunk: Callable[[np.ndarray, np.ndarray, np.ndarray, ChunkStep], None]
                 | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Starts episodes of `env_ids` (default all) from `init_state_ids` and runs them to success
    or the episode limit. Returns (success [n] bool, policy steps [n] int)."""
    ids = np.arange(batch.num_envs) if env_ids is None else np.asarray(env_ids, np.int64)
    frames = batch.reset(np.asarray(init_state_ids, np.int64), ids)
    if frames is None:
        raise ValueError("run_episodes needs an engine with cameras (the policy sees frames)")
    pos = {int(e): j for j, e in enumerate(ids)}
    while True:
        active = ids[~batch.done[ids]]
        if active.size == 0:
            break
        rows = np.array([pos[int(e)] for e in active])
        images = frames[rows]
        instr = [batch.instructions[e] for e in active]
        if use_proprio:
            acts = policy_fn(images, instr, proprio=batch.proprio(active))
        else:
            acts = policy_fn(images, instr)
        acts = np.asarray(acts, dtype=np.float64)
        out = batch.step(acts, active)
        if on_chunk is not None:
            on_chunk(active, images, acts, out)
        frames[rows] = out.frames
    return batch.success[ids].copy(), batch.episode_steps[ids].copy()
