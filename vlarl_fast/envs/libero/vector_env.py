"""A gymnasium `VectorEnv` over the native LIBERO engine, for frameworks that wrap LIBERO in a
`SubprocVectorEnv` / `AsyncVectorEnv` today (RLinf, veRL's VLA recipe, LeRobot).

    env = LiberoVectorEnv("libero_spatial", task_ids=[0, 1], envs_per_task=4, chunk=8)
    obs, info = env.reset(seed=0)              # obs["agentview_image"]: [8, 256, 256, 3] uint8
    obs, reward, terminated, truncated, info = env.step(actions)   # actions [8, 8, 7]

- An action is a chunk `[chunk, 7]` per env (OSC_POSE deltas + gripper), executed step by step;
  an env whose LIBERO goal holds after a control step stops there (reward 1, terminated).
- Observations: the cameras' frames at the end of the chunk (OpenVLA-OFT's orientation by
  default: `image_convention="openvla"`), and `state` [8]: eef position, eef axis-angle,
  gripper qpos. `info["task"]` holds each env's language instruction, `info["success"]` the
  episode's success, `info["init_state_id"]` its LIBERO init state.
- No autoreset (`AutoresetMode.DISABLED`): finished envs stay finished (they execute nothing)
  until `reset(options={"reset_mask": mask})`; `options={"init_state_ids": ids}` picks init
  states (default: env i of a task takes state i, or, with a seed, random states).
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from vlarl_fast.envs.libero.batch import LiberoBatch
from vlarl_fast.envs.libero.registry import SETTLE_STEPS
from vlarl_fast.envs.libero.scene import CAMERAS


class LiberoVectorEnv(VectorEnv):
    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.DISABLED}

    def __init__(self, suite: str, task_ids: Sequence[int] | None = None, envs_per_task: int = 1,
                 *, chunk: int = 8, num_threads: int | None = None, cameras=CAMERAS,
                 height: int = 256, width: int = 256, image_convention: str = "openvla",
                 max_steps: int | None = None, settle_steps: int = SETTLE_STEPS,
                 render_mode: str = "rgb_array", scenes: dict | None = None,
                 **render_options):
        self.batch = LiberoBatch.from_suite(suite, task_ids, envs_per_task, num_threads,
                                            cameras=cameras,
                                 height=height, width=width, image_convention=image_convention,
                                 max_steps=max_steps, settle_steps=settle_steps,
                                 scenes=scenes, **render_options)
        self.num_envs = self.batch.num_envs
        self.chunk = int(chunk)
        self.render_mode = render_mode
        self.cameras = list(cameras)
        image = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        spaces = {f"{c}_image": image for c in self.cameras}
        spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (8,), np.float64)
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.chunk, 7), np.float64)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._frames = np.zeros((self.num_envs, *self.batch.frame_shape()), np.uint8)
        self._init_ids = np.zeros(self.num_envs, np.int64)
        self._rng = np.random.default_rng()

    # ------------------------------------------------------------------ helpers
    def _obs(self) -> dict:
        obs = {f"{c}_image": self._frames[:, i] for i, c in enumerate(self.cameras)}
        obs["state"] = self.batch.proprio()
        return obs

    def _info(self, **extra) -> dict:
        return {"task": list(self.batch.instructions), "success": self.batch.success.copy(),
                "init_state_id": self._init_ids.copy(), **extra}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = options or {}
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mask = np.asarray(options.get("reset_mask", np.ones(self.num_envs, bool)), bool)
        ids = np.nonzero(mask)[0]
        if "init_state_ids" in options:
            chosen = np.asarray(options["init_state_ids"], np.int64).reshape(-1)
            chosen = chosen[ids] if chosen.size == self.num_envs else chosen
        elif seed is not None:
            chosen = self._rng.integers(0, 50, size=ids.size)
        else:
            chosen = self.batch.env_local[ids] % 50
        self._init_ids[ids] = chosen
        if ids.size:
            frames = self.batch.reset(chosen, ids)
            if frames is not None:
                self._frames[ids] = frames
        return self._obs(), self._info()

    def step(self, actions):
        acts = np.asarray(actions, dtype=np.float64)
        if acts.shape != (self.num_envs, self.chunk, 7):
            raise ValueError(f"actions: expected shape ({self.num_envs}, {self.chunk}, 7), got "
                             f"{acts.shape}")
        was_success = self.batch.success.copy()
        active = np.nonzero(~self.batch.done)[0]
        steps = np.zeros(self.num_envs, np.int64)
        if active.size:
            out = self.batch.step(acts[active], active)
            steps[active] = out.executed
            if out.frames is not None:
                self._frames[active] = out.frames
                ended = active[out.done]  # the chunk env leaves them black: render their final frame
                if ended.size:
                    self._frames[ended] = self.batch.render(ended)
        success = self.batch.success
        reward = (success & ~was_success).astype(np.float64)
        terminated = success.copy()
        truncated = self.batch.done & ~success
        return self._obs(), reward, terminated, truncated, self._info(steps_executed=steps)

    def render(self):
        """[num_envs, H, W, 3] uint8: each env's first camera at its last step."""
        return self._frames[:, 0].copy()

    def close_extras(self, **kwargs):
        self.batch.close()
