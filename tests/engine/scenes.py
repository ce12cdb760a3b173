"""Scenes the engine tests run on: one built by robosuite, one dominated by contacts."""

from __future__ import annotations

import functools

import mujoco
import numpy as np

from vlarl_fast.envs.scenes import contact_pile_xml


@functools.lru_cache(maxsize=None)
def robosuite_lift_model() -> mujoco.MjModel:
    """Panda Lift's MjModel, built by robosuite 1.4 itself."""
    import robosuite

    env = robosuite.make(
        "Lift",
        robots="Panda",
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        ignore_done=True,
    )
    env.reset()
    return env.sim.model._model


@functools.lru_cache(maxsize=None)
def contact_pile_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(contact_pile_xml(24))


SCENES = {"robosuite_lift": robosuite_lift_model, "contact_pile": contact_pile_model}


def random_controls(model: mujoco.MjModel, rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform controls inside each actuator's ctrlrange ([-1, 1] where unlimited)."""
    lo = np.where(model.actuator_ctrllimited, model.actuator_ctrlrange[:, 0], -1.0)
    hi = np.where(model.actuator_ctrllimited, model.actuator_ctrlrange[:, 1], 1.0)
    return rng.uniform(lo, hi, size=(n, model.nu))


def reference_rollout(model, init_states, ctrls, nstep, spec):
    """The reference: a Python loop of mujoco.mj_step over one MjData per env.

    ctrls: [num_calls, N, nu]; returns qpos [N, nq], qvel [N, nv] after all calls.
    """
    datas = []
    for state in init_states:
        d = mujoco.MjData(model)
        mujoco.mj_setState(model, d, state, spec)
        datas.append(d)
    for call in ctrls:
        for d, u in zip(datas, call):
            d.ctrl[:] = u
            for _ in range(nstep):
                mujoco.mj_step(model, d)
    return np.stack([d.qpos for d in datas]), np.stack([d.qvel for d in datas])


# A tiny scene with two cameras for the lifetime, concurrency and fuzz tests. Its visual
# settings keep GL context creation cheap on llvmpipe (no shadow map, no MSAA: ~0.13 s per
# engine with cameras instead of ~0.75 s); geoms are in robosuite's visual group 1.
CAMERA_XML = """
<mujoco>
  <visual><quality shadowsize="0" offsamples="0"/></visual>
  <default><geom group="1"/></default>
  <worldbody>
    <light pos="0 0 2"/>
    <geom type="plane" size="1 1 .1" rgba=".8 .8 .8 1"/>
    <body name="box" pos="0 0 .2"><freejoint/><geom type="box" size=".05 .05 .05" rgba="1 0 0 1"/></body>
    <body name="arm" pos=".3 0 .3"><joint name="hinge" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 .2 0 0" size=".02"/></body>
    <camera name="front" pos="0 -1 .5" xyaxes="1 0 0 0 .5 1"/>
    <camera name="top" pos="0 0 1.5"/>
  </worldbody>
  <actuator><motor joint="hinge" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


@functools.lru_cache(maxsize=None)
def camera_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(CAMERA_XML)


@functools.lru_cache(maxsize=None)
def robosuite_lift_osc_env():
    """robosuite 1.4 Panda Lift with the OSC_POSE controller (what Engine.from_robosuite reads),
    without renderers; its model has no shadow map or MSAA (cheap GL contexts)."""
    import robosuite

    env = robosuite.make(
        "Lift", robots="Panda",
        controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
        has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
        ignore_done=True, hard_reset=False)
    np.random.seed(0)
    env.reset()
    env.sim.model._model.vis.quality.shadowsize = 0
    env.sim.model._model.vis.quality.offsamples = 0
    return env
