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
