"""Native frames against mujoco.Renderer and robosuite's own camera observations.

Tolerance: none. The engine and the references draw the same mjvScene with the same OpenGL
implementation (same EGL device), the same MSAA sample count and the same viewport, so the
rasteriser is fed identical commands; frames are compared for exact equality (measured: 0 of
0 pixels differ on Mesa llvmpipe).
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from .scenes import CAMERAS, SIZE, ReferenceRenderer, lift_env, lift_model, random_states
from vlarl_fast.engine import Engine

NUM_ENVS = 4


@pytest.fixture(scope="module")
def states():
    return random_states(lift_model(), NUM_ENVS, seed=0)


@pytest.fixture(scope="module")
def reference():
    ref = ReferenceRenderer(lift_model(), SIZE, SIZE)
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def expected(states, reference):
    """[NUM_ENVS, len(CAMERAS), SIZE, SIZE, 3]: mujoco.Renderer's frames of `states`."""
    return np.stack([np.stack([reference.render(s, cam) for cam in CAMERAS]) for s in states])


@pytest.fixture(scope="module")
def engine2(states):
    engine = Engine(lift_model(), NUM_ENVS, 2, cameras=CAMERAS, height=SIZE, width=SIZE)
    engine.set_state(states)
    engine.forward()
    yield engine
    engine.close()


def test_frames_equal_mujoco_renderer(engine2, states, expected):
    frames = engine2.render()
    assert frames.shape == (NUM_ENVS, len(CAMERAS), SIZE, SIZE, 3)
    assert frames.dtype == np.uint8
    for env in range(NUM_ENVS):
        for c, cam in enumerate(CAMERAS):
            diff = np.abs(frames[env, c].astype(int) - expected[env, c])
            assert diff.max() == 0, (env, cam, int(diff.max()), float((diff > 0).mean()))


def test_each_env_renders_its_own_scene(engine2, expected):
    """Envs rendered in parallel on 2 workers: no frame shows another env's state."""
    frames = engine2.render()
    for env in range(NUM_ENVS):
        for other in range(NUM_ENVS):
            same = np.array_equal(frames[env, 0], expected[other, 0])
            assert same == (env == other), (env, other)


def test_render_returns_a_view_of_the_engine_buffer(engine2):
    frames = engine2.render()
    assert frames is engine2.frames
    assert not frames.flags.owndata and frames.flags.c_contiguous


def test_identical_across_thread_counts(engine2, states):
    with Engine(lift_model(), NUM_ENVS, 1, cameras=CAMERAS, height=SIZE, width=SIZE) as one:
        one.set_state(states)
        one.forward()
        np.testing.assert_array_equal(one.render(), engine2.render())


def test_render_subset_updates_only_those_envs(engine2, states, reference):
    before = engine2.render().copy()
    moved = random_states(lift_model(), 2, seed=7)
    engine2.set_state(moved, env_ids=[3, 1])
    engine2.forward(env_ids=[3, 1])
    try:
        frames = engine2.render(env_ids=[3, 1])
        np.testing.assert_array_equal(frames[[0, 2]], before[[0, 2]])
        for row, env in enumerate([3, 1]):
            for c, cam in enumerate(CAMERAS):
                np.testing.assert_array_equal(frames[env, c], reference.render(moved[row], cam))
    finally:
        engine2.set_state(states)
        engine2.forward()


def _robosuite_observation_and_state(seed: int):
    """robosuite's camera observation after random env.steps, and the state it shows."""
    env = lift_env()
    env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        env.step(rng.uniform(-1, 1, size=env.action_dim))
    env.sim.forward()  # robosuite's obs after a step shows the pre-step kinematics; align both
    obs = env._get_observations(force_update=True)
    model, data = env.sim.model._model, env.sim.data._data
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    return np.stack([obs[f"{cam}_image"] for cam in CAMERAS]), state


@pytest.mark.parametrize("convention, undo", [
    ("mujoco", lambda img: img[::-1]),         # robosuite's "opengl" rows flipped to top-down
    ("opengl", lambda img: img),                 # robosuite's own convention
    ("openvla", lambda img: img[::-1, ::-1]),    # OpenVLA-OFT's LIBERO preprocessing
])
def test_frames_equal_robosuite_camera_observation(convention, undo):
    obs, state = _robosuite_observation_and_state(seed=1)
    with Engine(lift_model(), 1, 1, cameras=CAMERAS, height=SIZE, width=SIZE,
                image_convention=convention) as engine:
        engine.set_state(state[None])
        engine.forward()
        frames = engine.render()
        for c, cam in enumerate(CAMERAS):
            np.testing.assert_array_equal(frames[0, c], undo(obs[c]), err_msg=cam)


def test_fast_option_turns_effects_off(engine2, states):
    """fast=True equals mujoco.Renderer without MSAA, shadows and reflections, and differs from
    the default (robosuite) settings."""
    ref = ReferenceRenderer(lift_model(), SIZE, SIZE, fast=True)
    try:
        with Engine(lift_model(), 1, 1, cameras=CAMERAS[:1], height=SIZE, width=SIZE,
                    fast=True) as fast:
            fast.set_state(states[:1])
            fast.forward()
            frame = fast.render()[0, 0]
            np.testing.assert_array_equal(frame, ref.render(states[0], CAMERAS[0]))
            assert not np.array_equal(frame, engine2.render()[0, 0])
    finally:
        ref.close()
