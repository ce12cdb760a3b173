"""Envs of several LIBERO tasks at once: one native engine per task (each task's scene is its own
MuJoCo model), addressed by global env ids 0..num_envs-1 in task order.

    batch = LiberoBatch([get_task("libero_goal", i) for i in range(10)], envs_per_task=4)
    frames = batch.reset()                  # init state i mod 50 for the i-th env of each task
    out = batch.step(actions)               # actions [40, K, 7]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlarl_fast.envs.libero.registry import SETTLE_STEPS, LiberoTask
from vlarl_fast.envs.libero.scene import CAMERAS, LiberoScene
from vlarl_fast.envs.libero.task_engine import ChunkStep, LiberoTaskEngine


class LiberoBatch:
    """`num_envs` LIBERO envs over one or more tasks; per-task native engines."""

    def __init__(self, tasks: Sequence[LiberoTask], envs_per_task: int | Sequence[int] = 1,
                 num_threads: int | None = None, *, cameras=CAMERAS, height: int = 256,
                 width: int = 256, image_convention: str = "openvla",
                 max_steps: int | None = None, settle_steps: int = SETTLE_STEPS,
                 scenes: dict | None = None, **render_options):
        tasks = list(tasks)
        if not tasks:
            raise ValueError("tasks: expected at least one LIBERO task")
        counts = ([int(envs_per_task)] * len(tasks) if np.isscalar(envs_per_task)
                  else [int(c) for c in envs_per_task])
        if len(counts) != len(tasks) or min(counts) < 1:
            raise ValueError(f"envs_per_task: expected a positive count per task, got {counts}")
        scenes = {} if scenes is None else scenes
        self.tasks = tasks
        self.engines: list[LiberoTaskEngine] = []
        self.env_task = np.repeat(np.arange(len(tasks)), counts)  # [num_envs] task position
        self.env_local = np.concatenate([np.arange(c) for c in counts])  # id in its engine
        self.num_envs = int(sum(counts))
        for task, count in zip(tasks, counts):
            key = (task.suite, task.index)
            if key not in scenes:
                scenes[key] = LiberoScene(task)
            self.engines.append(LiberoTaskEngine(
                scenes[key], count, num_threads, cameras=cameras, height=height, width=width,
                image_convention=image_convention, max_steps=max_steps,
                settle_steps=settle_steps, **render_options))
        self.scenes = scenes
        self.cameras = list(cameras or [])
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

    def _ids(self, env_ids) -> np.ndarray:
        if env_ids is None:
            return np.arange(self.num_envs)
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise IndexError(f"env ids must lie in [0, {self.num_envs}), got {ids.tolist()}")
        return ids

    def _groups(self, ids: np.ndarray):
        """(engine, local ids, positions in `ids`) per task touched by `ids`."""
        for t in np.unique(self.env_task[ids]):
            pos = np.nonzero(self.env_task[ids] == t)[0]
            yield self.engines[t], self.env_local[ids[pos]], pos

    @property
    def success(self) -> np.ndarray:
        return np.concatenate([e.success for e in self.engines])

    @property
    def done(self) -> np.ndarray:
        return np.concatenate([e.done for e in self.engines])

    @property
    def episode_steps(self) -> np.ndarray:
        return np.concatenate([e.episode_steps for e in self.engines])

    def frame_shape(self) -> tuple:
        e = self.engines[0].engine
        return (len(self.cameras), e.render_height, e.render_width, 3)

    def reset(self, init_state_ids=None, env_ids=None, *, render: bool = True):
        """Starts episodes (see LiberoTaskEngine.reset); init_state_ids default to each env's
        index within its task mod the number of init states. Returns frames [n, C, H, W, 3]."""
        ids = self._ids(env_ids)
        sel = None if init_state_ids is None else np.asarray(init_state_ids).reshape(-1)
        frames = np.zeros((ids.size, *self.frame_shape()), np.uint8) if (
            render and self.cameras) else None
        for eng, local, pos in self._groups(ids):
            f = eng.reset(None if sel is None else sel[pos], local, render=render)
            if frames is not None:
                frames[pos] = f
        return frames

    def step(self, actions, env_ids=None, *, render: bool = True) -> ChunkStep:
        ids = self._ids(env_ids)
        acts = np.asarray(actions, dtype=np.float64)
        if acts.ndim == 2:
            acts = acts[:, None, :]
        if acts.shape[0] != ids.size:
            raise ValueError(f"actions: expected {ids.size} rows, got shape {acts.shape}")
        n = ids.size
        out = ChunkStep(success=np.zeros(n, bool), done=np.zeros(n, bool),
                        steps_executed=np.zeros(n, np.int64), episode_steps=np.zeros(n, np.int64),
                        frames=np.zeros((n, *self.frame_shape()), np.uint8)
                        if (render and self.cameras) else None)
        for eng, local, pos in self._groups(ids):
            r = eng.step(acts[pos], local, render=render)
            out.success[pos], out.done[pos] = r.success, r.done
            out.steps_executed[pos], out.episode_steps[pos] = r.steps_executed, r.episode_steps
            if out.frames is not None:
                out.frames[pos] = r.frames
        return out

    def proprio(self, env_ids=None) -> np.ndarray:
        """[n, 8] OpenVLA-OFT's LIBERO state: eef position, eef axis-angle, gripper qpos."""
        ids = self._ids(env_ids)
        out = np.zeros((ids.size, 8))
        for eng, local, pos in self._groups(ids):
            out[pos] = eng.proprio(local)
        return out

    def close(self) -> None:
        for e in self.engines:
            e.close()
