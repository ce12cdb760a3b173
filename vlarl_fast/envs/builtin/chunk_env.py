"""The built-in tasks' reference chunk env: robosuite's own Python `env.step`, one robosuite env
per slot. It is the behaviour the native `EngineChunkEnv` (engine_env.py) reproduces and the path
the SimpleVLA-RL-style baseline uses. Both implement `vlarl_fast.envs.chunk_env.ChunkEnv` (frames
`[n, 1, H, W, 3]`, one camera); `make_env.make_chunk_env` picks one.
"""

from __future__ import annotations

import mujoco
import numpy as np

from vlarl_fast.envs.builtin.scene import CAMERA, BuiltinTableEnv
from vlarl_fast.envs.builtin.tasks import GRIPPER_BODIES, Task
from vlarl_fast.envs.chunk_env import ChunkResult, EpisodeBook
from vlarl_fast.envs.chunk_env import env_ids_array as _ids


class ReferenceChunkEnv:
    """robosuite Python stepping; frames from one `mujoco.Renderer` shared by all slots."""

    def __init__(self, num_envs: int, *, max_steps: int, image_size: int = 64, render: bool = True):
        self.envs = [BuiltinTableEnv(camera_size=image_size) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.image_size = image_size
        self.episodes = EpisodeBook(num_envs, max_steps)
        model = self.envs[0].sim.model._model
        self._gripper_bodies = {model.body(name).id for name in GRIPPER_BODIES}
        self._renderer = mujoco.Renderer(model, image_size, image_size) if render else None
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[:] = [0, 1, 1, 0, 0, 0]  # robosuite's visible groups (no collision geoms)
        self._camera = CAMERA

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        for env in self.envs:
            env.close()

    def reset(self, states: np.ndarray, tasks: list[Task], env_ids=None) -> np.ndarray:
        ids = _ids(env_ids, self.num_envs)
        for i, state in zip(ids, np.asarray(states)):
            self.envs[i].reset_to_flat_state(state)
        self.episodes.start(ids, tasks)
        return self.render(ids)

    def _succeeded(self, i: int) -> bool:
        task = self.episodes.tasks[i]
        if task.kind == "reach":
            from vlarl_fast.envs.builtin.demos import reached

            return reached(self.envs[i], task)
        model, data = self.envs[i].sim.model._model, self.envs[i].sim.data._data
        target = model.body(task.target_body).id
        for c in data.contact[: data.ncon]:
            b1, b2 = model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2]
            if (b1 == target and b2 in self._gripper_bodies) or (b2 == target and b1 in self._gripper_bodies):
                return True
        return False

    def step_chunk(self, actions: np.ndarray, env_ids=None) -> ChunkResult:
        ids = _ids(env_ids, self.num_envs)
        actions = np.asarray(actions, dtype=np.float64)
        ep = self.episodes
        executed = np.zeros(ids.size, dtype=np.int64)
        success = np.zeros(ids.size, dtype=bool)
        for row, i in enumerate(ids):
            for k in range(actions.shape[1]):
                if ep.done[i]:
                    break
                self.envs[i].step(actions[row, k])
                ep.steps[i] += 1
                executed[row] += 1
                if self._succeeded(i):
                    ep.success[i] = success[row] = True
                    ep.done[i] = True
                elif ep.steps[i] >= ep.max_steps:
                    ep.done[i] = True
        done = ep.done[ids].copy()
        frames = np.zeros((ids.size, 1, self.image_size, self.image_size, 3), dtype=np.uint8)
        if self._renderer is not None and not done.all():
            frames[~done] = self.render(ids[~done])
        return ChunkResult(executed=executed, success=ep.success[ids].copy(), done=done, frames=frames,
                           episode_steps=ep.steps[ids].copy())

    def proprio(self, env_ids=None) -> None:
        return None

    def render(self, env_ids=None) -> np.ndarray:
        ids = _ids(env_ids, self.num_envs)
        if self._renderer is None:
            return np.zeros((ids.size, 1, self.image_size, self.image_size, 3), dtype=np.uint8)
        out = np.empty((ids.size, 1, self.image_size, self.image_size, 3), dtype=np.uint8)
        for row, i in enumerate(ids):
            self._renderer.update_scene(self.envs[i].sim.data._data, self._camera, scene_option=self._scene_option)
            out[row, 0] = self._renderer.render()
        return out

    def eef_and_target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        env = self.envs[i]
        return env.eef_pos(), env.cube_pos(self.episodes.tasks[i].colour)
