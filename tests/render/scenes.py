"""Scenes and references for the rendering tests (cached per process: robosuite envs cost
1-2 s each and GL contexts on Mesa llvmpipe about one second)."""

from __future__ import annotations

import copy
import functools

import mujoco
import numpy as np

CAMERAS = ["agentview", "robot0_eye_in_hand"]
SIZE = 64  # parity tests render small frames: llvmpipe costs ~1 ms per 1000 pixels and more


@functools.lru_cache(maxsize=None)
def lift_env(size: int = SIZE):
    """robosuite 1.4 Panda Lift (OSC_POSE, as Engine.from_robosuite needs) with its own
    offscreen camera observations of CAMERAS."""
    import robosuite

    env = robosuite.make(
        "Lift",
        robots="Panda",
        controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
        hard_reset=False,  # keep one sim (and model) across resets
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        camera_names=list(CAMERAS),
        camera_heights=size,
        camera_widths=size,
        ignore_done=True,
    )
    env.reset()
    return env


def lift_model() -> mujoco.MjModel:
    return lift_env().sim.model._model


def random_states(model: mujoco.MjModel, num: int, seed: int) -> np.ndarray:
    """Full physics states (mjSTATE_INTEGRATION): robosuite's reset pose (arm over the table,
    cube on it) with the arm joints, gripper and cube moved at random."""
    rng = np.random.default_rng(seed)
    base = _reset_qpos()
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    data = mujoco.MjData(model)
    states = []
    for _ in range(num):
        mujoco.mj_resetData(model, data)
        qpos = base.copy()
        for j in range(model.njnt):
            adr = model.jnt_qposadr[j]
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                qpos[adr:adr + 2] += rng.uniform(-0.08, 0.08, size=2)  # slide the cube
                yaw = rng.uniform(-np.pi, np.pi)
                qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            elif model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
                lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-0.3, 0.3)
                qpos[adr] = np.clip(qpos[adr] + rng.uniform(-0.3, 0.3), lo, hi)
        data.qpos[:] = qpos
        state = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, data, state, spec)
        states.append(state)
    return np.stack(states)


@functools.lru_cache(maxsize=None)
def _reset_qpos() -> np.ndarray:
    env = lift_env()
    env.reset()
    return env.sim.data.qpos.copy()


def robosuite_scene_option() -> mujoco.MjvOption:
    """robosuite's offscreen MjvOption: collision geoms (group 0) hidden, visual (group 1) shown."""
    opt = mujoco.MjvOption()
    opt.geomgroup[0] = 0
    opt.geomgroup[1] = 1
    return opt


class ReferenceRenderer:
    """mujoco.Renderer with robosuite's scene settings (maxgeom 1000, robosuite's geom groups)."""

    def __init__(self, model: mujoco.MjModel, height: int, width: int, fast: bool = False):
        if fast:  # the engine's fast option: no MSAA, shadows or reflections
            model = copy.copy(model)
            model.vis.quality.offsamples = 0
        self.model = model
        self.renderer = mujoco.Renderer(model, height, width, max_geom=1000)
        self.data = mujoco.MjData(model)
        self.option = robosuite_scene_option()
        self.fast = fast

    def render(self, state: np.ndarray, camera: str) -> np.ndarray:
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera=camera, scene_option=self.option)
        if self.fast:
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()
