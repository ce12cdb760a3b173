"""LIBERO's robots (MountedPanda, OnTheGroundPanda: robosuite SingleArm with their own model,
mount and init qpos) on robosuite's Lift arena: the engine reads them like any robosuite robot
and matches env.step (tolerances as in test_robosuite_parity)."""

import numpy as np
import pytest

from vlarl_fast import Engine

from . import robosuite_ref as R
from .test_robosuite_parity import check_close

K = 50


@pytest.mark.parametrize("robot", ["MountedPanda", "OnTheGroundPanda"])
def test_libero_robot_matches_env_step(robot):
    env = R.make_env("Lift", robot)
    rng = np.random.default_rng(11)
    state = env.sim.get_state().flatten()
    plans = [(state, R.random_actions(rng, K)),
             (state, R.reach_grasp_actions(env, "Lift", state, rng, K))]
    refs = [R.rollout(env, s, a) for s, a in plans]
    for ref, plan in zip(refs, plans):
        ref["plan"] = plan
    if robot == "MountedPanda":  # OnTheGroundPanda stands too low to reach Lift's table
        assert refs[1]["gripper_contact"].sum() >= 5
    with Engine.from_robosuite(env, 2, 2) as engine:
        assert engine.spec.robot == robot
        engine.set_state(np.stack([s for s, _ in plans]))
        res = engine.step_chunk(np.stack([a for _, a in plans]))
        steps = np.arange(1, K + 1)
        for i, ref in enumerate(refs):
            check_close(env, ref, engine.qpos[i], "qpos", K, f"{robot} plan {i}")
            check_close(env, ref, engine.qvel[i], "qvel", K, f"{robot} plan {i}")
            for name in ("eef_pos", "eef_quat", "gripper_qpos"):
                check_close(env, ref, getattr(res, name)[i], name, steps, f"{robot} plan {i}")
