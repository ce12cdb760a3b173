"""The built-in tasks as a task suite (the trainer's and evaluator's view of a task family).

Initial states come from integer seeds: training draws from [0, TRAIN_SEED_LIMIT) (or from a
given pool), evaluation uses the held-out seeds from EVAL_SEED_BASE up (init_states.py).
"""

from __future__ import annotations

import numpy as np

from vlarl_fast.envs.builtin.init_states import TRAIN_SEED_LIMIT, eval_seeds, states_from_seeds
from vlarl_fast.envs.builtin.scene import BuiltinTableEnv
from vlarl_fast.envs.builtin.tasks import get_tasks


class BuiltinSuite:
    name = "builtin"
    has_demos = True  # a scripted expert (demos.py) for one-demo SFT

    def __init__(self, task_names):
        self.tasks = get_tasks(task_names)
        self._state_env = BuiltinTableEnv()

    def sample_groups(self, rng: np.random.Generator, groups: int, pool) -> tuple[np.ndarray, np.ndarray]:
        """(task index, init seed) per group. Tasks in equal shares (a shuffled cycle over the task
        list): every round, and so every update, sees each task; seeds from `pool` or fresh draws."""
        task_idx = rng.permutation(np.resize(rng.permutation(len(self.tasks)), groups))
        if len(pool):
            seeds = rng.choice(np.asarray(pool), size=groups)
        else:
            seeds = rng.integers(0, TRAIN_SEED_LIMIT, size=groups)
        return task_idx, seeds

    def init_states(self, task_idx, init_ids) -> np.ndarray:
        """[n, S]: the state of each seed (the scene is the same for every task), each seed's once."""
        seeds, inverse = np.unique(np.asarray(init_ids), return_inverse=True)
        return states_from_seeds(self._state_env, seeds)[inverse.reshape(-1)]

    def eval_init_ids(self, per_task: int, offset: int) -> np.ndarray:
        return np.asarray(eval_seeds(per_task, offset), dtype=np.int64)

    def unnorm_key(self, norm_stats) -> str | None:
        return None  # the built-in policy has one set of statistics

    def close(self) -> None:
        self._state_env.close()
