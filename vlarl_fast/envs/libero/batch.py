"""Envs of several LIBERO tasks with a fixed task per env slot (the gymnasium VectorEnv's face of
`LiberoChunkEnv`): global env ids 0..num_envs-1 in task order, episodes chosen by init-state id.

    batch = LiberoBatch([get_task("libero_goal", i) for i in range(10)], envs_per_task=4)
    frames = batch.reset()                  # init state i mod 50 for the i-th env of each task
    out = batch.step(actions)               # actions [40, K, 7] -> ChunkResult
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlarl_fast.envs.chunk_env import ChunkResult, env_ids_array
from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import LiberoTask


class LiberoBatch(LiberoChunkEnv):
    """`envs_per_task` envs of each of `tasks`; one native engine per task."""

    def __init__(self, tasks: Sequence[LiberoTask], envs_per_task: int | Sequence[int] = 1,
                 num_threads: int | None = None, **options):
        tasks = list(tasks)
        if not tasks:
            raise ValueError("tasks: expected at least one LIBERO task")
        counts = ([int(envs_per_task)] * len(tasks) if np.isscalar(envs_per_task)
                  else [int(c) for c in envs_per_task])
        if len(counts) != len(tasks) or min(counts) < 1:
            raise ValueError(f"envs_per_task: expected a positive count per task, got {counts}")
        super().__init__(int(sum(counts)), num_threads, **options)
        self.tasks = tasks
        self.env_task = np.repeat(np.arange(len(tasks)), counts)  # [num_envs] task position
        self.env_local = np.concatenate([np.arange(c) for c in counts])  # id in its engine
        for task, count in zip(tasks, counts):
            self._add_engine(task, count)
        slots = np.arange(self.num_envs)
        for t, task in enumerate(tasks):
            self._bind(slots[self.env_task == t].tolist(), task)
        self.engines = [self.slot_engine[int(np.argmax(self.env_task == t))] for t in range(len(tasks))]
        self.instructions = [tasks[t].language for t in self.env_task]

    @classmethod
    def from_suite(cls, suite: str, task_ids: Sequence[int] | None = None,
                   envs_per_task: int | Sequence[int] = 1, num_threads: int | None = None,
                   **options) -> "LiberoBatch":
        """All tasks of a suite (or `task_ids` of it), `envs_per_task` envs each."""
        from vlarl_fast.envs.libero.registry import suite_tasks

        tasks = suite_tasks(suite)
        if task_ids is not None:
            tasks = [tasks[i] for i in task_ids]
        return cls(tasks, envs_per_task, num_threads, **options)

    def reset(self, init_state_ids=None, env_ids=None, *, render: bool = True):
        """Starts episodes of `env_ids` (default all) from their task's init states by index
        (default: each env's index within its task mod the number of init states), settle steps
        included. Returns frames [n, C, H, W, 3] (None if render=False or no cameras)."""
        ids = env_ids_array(env_ids, self.num_envs)
        if init_state_ids is None:
            sel = self.env_local[ids]
        else:
            sel = np.asarray(init_state_ids, dtype=np.int64).reshape(-1)
            if sel.size != ids.size:
                raise ValueError(f"init_state_ids has {sel.size} entries for {ids.size} envs")
        tasks = [self.tasks[t] for t in self.env_task[ids]]
        states = []
        for task, s in zip(tasks, sel):
            table = task.init_states()
            if not 0 <= s < len(table) and init_state_ids is not None:
                raise IndexError(f"{task.name} has {len(table)} init states; got id {int(s)}")
            states.append(table[s % len(table)])
        return super().reset(states, tasks, ids, render=render)

    def step(self, actions, env_ids=None, *, render: bool = True) -> ChunkResult:
        return self.step_chunk(actions, env_ids, render=render)
