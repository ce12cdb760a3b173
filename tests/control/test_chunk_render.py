"""Rendering inside step_chunk: "end" and "every" modes give the frames the renderer itself
produces for the same states (CPU EGL here; the same code path runs on GPU EGL)."""

import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast._native import C
from vlarl_fast.engine.predicates import JointBelow

from . import robosuite_ref as R


@pytest.fixture(scope="module")
def engine():
    assert C.HAVE_CHUNK_RENDER
    env = R.make_env("Lift")
    eng = Engine.from_robosuite(env, 2, 2, cameras=["agentview", "robot0_eye_in_hand"],
                                height=48, width=64)
    rng = np.random.default_rng(5)
    yield eng, env.sim.get_state().flatten(), rng.uniform(-1, 1, size=(2, 4, 7))
    eng.close()


def test_end_mode_renders_the_final_state(engine):
    eng, state, actions = engine
    eng.set_state(state)
    res = eng.step_chunk(actions)  # default: "end" on an engine with cameras
    assert res.frames_every is None
    end = eng.frames.copy()
    assert end.shape == (2, 2, 48, 64, 3) and end.std() > 0
    eng.render()
    np.testing.assert_array_equal(eng.frames, end)


def test_every_mode_renders_each_step(engine):
    eng, state, actions = engine
    eng.set_state(state)
    before = eng.render().copy()
    res = eng.step_chunk(actions, render="every")
    every = res.frames_every.copy()
    assert every.shape == (2, 4, 2, 48, 64, 3)
    np.testing.assert_array_equal(eng.frames, before)  # "every" leaves the main buffer alone
    for k in range(4):
        eng.set_state(state)
        eng.step_chunk(actions[:, :k + 1], render="end")
        np.testing.assert_array_equal(every[:, k], eng.frames, err_msg=f"step {k}")
    assert not np.array_equal(every[:, 0], every[:, 3])


def test_every_mode_repeats_frames_after_early_stop(engine):
    eng, state, actions = engine
    eng.set_state(state)
    eng.set_success(JointBelow("gripper0_finger_joint1", 1.0), env_ids=[0])  # holds at once
    try:
        res = eng.step_chunk(actions, render="every")
        assert res.steps_executed.tolist() == [1, 4]
        for k in range(1, 4):
            np.testing.assert_array_equal(res.frames_every[0, k], res.frames_every[0, 0])
    finally:
        eng.set_success([], env_ids=[0])
