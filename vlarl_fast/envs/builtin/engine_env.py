"""`ChunkEnv` on the native engine: `Engine.from_robosuite` on the built-in scene, one saved state
per env (`set_state` starts an episode), native OSC_POSE chunk execution with the task's success
predicate (grip site in a box around the target cube, or gripper contact) checked after every control step, and one
frame per env rendered at the chunk's end by the engine's worker threads.
"""

from __future__ import annotations

import numpy as np

from vlarl_fast.engine import Engine
from vlarl_fast.engine.predicates import InContact, InRegion
from vlarl_fast.envs.builtin.scene import CAMERA, BuiltinTableEnv
from vlarl_fast.envs.builtin.tasks import EEF_BODY, GRIPPER_BODIES, REACH_XY, REACH_Z, Task
from vlarl_fast.envs.chunk_env import ChunkResult, EpisodeBook
from vlarl_fast.envs.chunk_env import env_ids_array as _ids


def success_predicate(task: Task):
    if task.kind == "touch":
        return InContact(a=list(GRIPPER_BODIES), b=[task.target_body])
    if task.kind == "reach":
        return InRegion(point=EEF_BODY, low=[-REACH_XY, -REACH_XY, 0.0], high=[REACH_XY, REACH_XY, REACH_Z],
                        frame=task.target_body)
    raise ValueError(f"task.kind: expected one of ('reach', 'touch'), got {task.kind!r}")


class EngineChunkEnv:
    def __init__(self, num_envs: int, *, max_steps: int, image_size: int = 64, num_threads: int = 2,
                 render: bool = True, fast_render: bool = False):
        self._scene = BuiltinTableEnv()
        self._scene.reset()
        cameras = [CAMERA] if render else None
        self.engine = Engine.from_robosuite(self._scene, num_envs, num_threads, cameras=cameras,
                                            height=image_size, width=image_size, fast=fast_render)
        self.num_envs = num_envs
        self.image_size = image_size
        self.episodes = EpisodeBook(num_envs, max_steps)
        self._render = render

    def close(self) -> None:
        self.engine.close()
        self._scene.close()

    def _frames(self, ids: np.ndarray) -> np.ndarray:
        if not self._render:
            return np.zeros((ids.size, 1, self.image_size, self.image_size, 3), dtype=np.uint8)
        return self.engine.frames[ids].copy()

    def reset(self, states: np.ndarray, tasks: list[Task], env_ids=None) -> np.ndarray:
        ids = _ids(env_ids, self.num_envs)
        self.engine.set_state(np.asarray(states, dtype=np.float64), env_ids=ids)
        by_task: dict[str, list[int]] = {}
        for i, task in zip(ids, tasks):
            by_task.setdefault(task.name, []).append(int(i))
        for name, rows in by_task.items():
            task = next(t for t in tasks if t.name == name)
            self.engine.set_success([success_predicate(task)], env_ids=rows)
        self.episodes.start(ids, tasks)
        self.engine.forward(ids)
        if self._render:
            self.engine.render(ids)
        return self._frames(ids)

    def step_chunk(self, actions: np.ndarray, env_ids=None) -> ChunkResult:
        ids = _ids(env_ids, self.num_envs)
        ep = self.episodes
        remaining = int((ep.max_steps - ep.steps[ids]).max())
        actions = np.asarray(actions, dtype=np.float64)[:, : max(remaining, 1)]
        res = self.engine.step_chunk(actions, env_ids=ids, render="end" if self._render else "none")
        executed = np.asarray(res.steps_executed, dtype=np.int64).copy()
        ep.steps[ids] += executed
        now = np.asarray(res.success, dtype=bool).copy()
        ep.success[ids] = now
        ep.done[ids] = now | (ep.steps[ids] >= ep.max_steps)
        done = ep.done[ids].copy()
        frames = self._frames(ids)
        frames[done] = 0
        return ChunkResult(executed=executed, success=now, done=done, frames=frames,
                           episode_steps=ep.steps[ids].copy())

    def render(self, env_ids=None) -> np.ndarray:
        """Frames [n, 1, H, W, 3] of the envs' current states (any env, done or not)."""
        ids = _ids(env_ids, self.num_envs)
        if self._render:
            self.engine.render(ids)
        return self._frames(ids)

    def proprio(self, env_ids=None) -> None:
        return None
