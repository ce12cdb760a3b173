"""The engine's physics equals a Python loop of mujoco.mj_step, bit for bit."""

import mujoco
import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast.engine.engine import FULL_STATE_SPEC

from .scenes import SCENES, random_controls, reference_rollout

NUM_ENVS = 5
NSTEP = 7
NUM_CALLS = 6


def _diverse_initial_states(model, rng, n):
    """n different starting states: qpos0 plus noise on velocities, then a few steps."""
    d = mujoco.MjData(model)
    states = []
    for _ in range(n):
        mujoco.mj_resetData(model, d)
        d.qvel[:] = rng.normal(scale=0.3, size=model.nv)
        for _ in range(3):
            mujoco.mj_step(model, d)
        state = np.empty(mujoco.mj_stateSize(model, FULL_STATE_SPEC))
        mujoco.mj_getState(model, d, state, FULL_STATE_SPEC)
        states.append(state)
    return np.stack(states)


@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("num_threads", [1, 2, 4])
def test_step_matches_python_mj_step_loop(scene, num_threads):
    model = SCENES[scene]()
    rng = np.random.default_rng()  # fresh inputs every run: parity must hold for any
    init = _diverse_initial_states(model, rng, NUM_ENVS)
    ctrls = np.stack([random_controls(model, rng, NUM_ENVS) for _ in range(NUM_CALLS)])

    with Engine(model, NUM_ENVS, num_threads) as engine:
        engine.set_state(init)
        for call in ctrls:
            engine.step(call, nstep=NSTEP)
        qpos, qvel = engine.qpos.copy(), engine.qvel.copy()
        time = engine.time.copy()

    ref_qpos, ref_qvel = reference_rollout(model, init, ctrls, NSTEP, FULL_STATE_SPEC)
    np.testing.assert_array_equal(qpos, ref_qpos)
    np.testing.assert_array_equal(qvel, ref_qvel)
    np.testing.assert_allclose(time, init[:, 0] + NUM_CALLS * NSTEP * model.opt.timestep)
    assert not np.allclose(qpos, qpos[0]), "envs should differ (different states and controls)"


def test_contact_scene_really_has_contacts():
    model = SCENES["contact_pile"]()
    d = mujoco.MjData(model)
    for _ in range(400):
        mujoco.mj_step(model, d)
    assert d.ncon >= 20


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_repeated_runs_are_identical(num_threads):
    model = SCENES["contact_pile"]()
    rng = np.random.default_rng()
    ctrls = np.stack([random_controls(model, rng, 6) for _ in range(4)])
    results = []
    for _ in range(2):
        with Engine(model, 6, num_threads) as engine:
            for call in ctrls:
                engine.step(call, nstep=10)
            results.append((engine.qpos.copy(), engine.qvel.copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_subset_stepping_leaves_other_envs_untouched():
    model = SCENES["contact_pile"]()
    with Engine(model, 4, 2) as engine:
        before = engine.get_state()
        engine.step(np.full((2, model.nu), 0.5), nstep=5, env_ids=[1, 3])
        after = engine.get_state()
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert not np.array_equal(after[[1, 3]], before[[1, 3]])
