"""step_chunk's render modes: frames after every control step or once at the chunk's end.

The reference is robosuite's own camera observation returned by env.step (IMAGE_CONVENTION
"opengl", so the engine uses image_convention="opengl"). Both render the same mjData after the
step's last mj_step; the physics agrees to rounding level (<= 1e-13 after 8 steps,
tests/control), far below what moves a rasterised pixel, so frames must be equal exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.control.robosuite_ref import start as _start  # the episode start set_state defines

from .scenes import CAMERAS, SIZE, lift_env
from vlarl_fast import Engine

K = 8
NUM_ENVS = 2


@pytest.fixture(scope="module")
def case():
    env = lift_env()
    env.reset()
    state = env.sim.get_state().flatten()
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, size=(NUM_ENVS, K, 7))
    actions[:, :, 6] = np.sign(actions[:, :, 6])
    reference = []  # [NUM_ENVS, K, cameras, H, W, 3]: env.step's camera observations
    for i in range(NUM_ENVS):
        _start(env, state)
        frames = []
        for a in actions[i]:
            obs, _, _, _ = env.step(a)
            frames.append(np.stack([obs[f"{cam}_image"] for cam in CAMERAS]))
        reference.append(np.stack(frames))
    engine = Engine.from_robosuite(env, NUM_ENVS, 2, cameras=CAMERAS, height=SIZE, width=SIZE,
                                   image_convention="opengl")
    yield engine, state, actions, np.stack(reference)
    engine.close()


def test_render_every_equals_robosuite_observations(case):
    engine, state, actions, reference = case
    engine.set_state(state)
    result = engine.step_chunk(actions, render="every")
    assert result.frames_every.shape == (NUM_ENVS, K, len(CAMERAS), SIZE, SIZE, 3)
    for i in range(NUM_ENVS):
        for k in range(K):
            np.testing.assert_array_equal(result.frames_every[i, k], reference[i, k],
                                          err_msg=f"env {i}, step {k + 1}")
    assert not np.array_equal(reference[0, -1], reference[1, -1])  # envs saw different scenes


def test_render_end_equals_last_observation_and_render(case):
    engine, state, actions, reference = case
    engine.set_state(state)
    engine.frames[:] = 0
    engine.step_chunk(actions, render="end")
    np.testing.assert_array_equal(engine.frames, reference[:, -1])
    end = engine.frames.copy()
    np.testing.assert_array_equal(engine.render(), end)  # render() now shows the same state


def test_render_none_leaves_frames(case):
    engine, state, actions, _ = case
    engine.set_state(state)
    engine.frames[:] = 17
    result = engine.step_chunk(actions, render="none")
    assert result.frames_every is None
    assert (engine.frames == 17).all()


def test_default_is_end_for_engines_with_cameras(case):
    engine, state, actions, reference = case
    engine.set_state(state)
    engine.frames[:] = 0
    engine.step_chunk(actions[:, :3])
    np.testing.assert_array_equal(engine.frames, reference[:, 2])
