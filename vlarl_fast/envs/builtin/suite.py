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

    def sft_samples(self, env, cfg, chunk_len: int, out_dir, log=None):
        """One-demo SFT samples: per demo chunk, the frame at its start (rendered by `env` from the
        saved state) and its K expert actions. Returns (frames, instructions, actions, demos)."""
        from vlarl_fast.envs.builtin.demos import collect_demos

        # The expert needs ~4 chunks; demos are not bound by the (possibly shorter) episode limit.
        demos = collect_demos(self.tasks, cfg.sft.demos_per_task, cfg.sft.demo_seed, chunk_len=chunk_len,
                              max_chunks=max(cfg.env.max_chunks, 8))
        frames, instructions, actions = [], [], []
        for demo in demos:
            n = len(demo.states)
            ids = np.arange(n)
            for start in range(0, n, env.num_envs):
                part = ids[start:start + env.num_envs]
                frames.append(env.reset(demo.states[part], [demo.task] * part.size, env_ids=part - start))
            instructions += [demo.task.instruction] * n
            actions.append(demo.actions)
        return np.concatenate(frames), instructions, np.concatenate(actions), None, len(demos)  # no robot state

    def unnorm_key(self, norm_stats) -> str | None:
        return None  # the built-in policy has one set of statistics

    def close(self) -> None:
        self._state_env.close()
