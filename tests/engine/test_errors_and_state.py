"""Bad input raises a named error; state round-trips; one broken env never takes the batch down."""

import gc

import mujoco
import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast.engine import EnvStatus, MujocoError
from vlarl_fast.engine.engine import FULL_STATE_SPEC
from vlarl_fast.envs.scenes import contact_pile_xml

from .scenes import SCENES, random_controls


@pytest.fixture
def engine():
    eng = Engine(SCENES["contact_pile"](), 3, 2)
    yield eng
    eng.close()


# ---------------------------------------------------------------- bad input
def test_wrong_ctrl_shape(engine):
    with pytest.raises(ValueError, match=r"ctrl must have shape \(3, 1\), got \(3, 2\)"):
        engine.step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"ctrl must have shape \(2, 1\), got \(3, 1\)"):
        engine.step(np.zeros((3, 1)), env_ids=[0, 2])


def test_wrong_ctrl_dtype(engine):
    with pytest.raises(TypeError, match="ctrl must be a floating-point array, got dtype int64"):
        engine.step(np.zeros((3, 1), dtype=np.int64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_ctrl_names_the_rows(engine, bad):
    ctrl = np.zeros((3, 1))
    ctrl[1, 0] = bad
    before = engine.get_state()
    with pytest.raises(ValueError, match=r"ctrl has NaN or inf values in rows \[1\]"):
        engine.step(ctrl)
    np.testing.assert_array_equal(engine.get_state(), before)  # nothing stepped


@pytest.mark.parametrize("ids", [[3], [-1], [0, 7]])
def test_env_id_out_of_range(engine, ids):
    with pytest.raises(IndexError, match=r"env id -?\d+ is out of range \[0, 3\)"):
        engine.step(np.zeros((len(ids), 1)), env_ids=ids)
    with pytest.raises(IndexError, match="out of range"):
        engine.get_state(env_ids=ids)


def test_env_ids_must_be_unique_ints(engine):
    with pytest.raises(ValueError, match="duplicates"):
        engine.step(np.zeros((2, 1)), env_ids=[1, 1])
    with pytest.raises(TypeError, match="env_ids must be integers"):
        engine.step(np.zeros((1, 1)), env_ids=[0.5])


def test_bad_nstep_and_constructor_arguments():
    model = SCENES["contact_pile"]()
    with pytest.raises(ValueError, match=r"num_envs must be an int in \[1, 2147483647\], got 0"):
        Engine(model, 0)
    with pytest.raises(ValueError, match=r"num_threads must be an int in \[1, 1024\], got 0"):
        Engine(model, 2, 0)
    with pytest.raises(TypeError, match="model must be a mujoco.MjModel or an XML path"):
        Engine(42, 2)
    with pytest.raises(FileNotFoundError, match="model XML not found"):
        Engine("/nonexistent/scene.xml", 2)
    with Engine(model, 1, 1) as eng:
        with pytest.raises(ValueError, match=r"nstep must be an int in \[0, 2147483647\], got -1"):
            eng.step(nstep=-1)


def test_bad_state_shape_and_values(engine):
    size = engine.state_size()
    with pytest.raises(ValueError, match=rf"states must have shape \[{size}\] or \[3, {size}\]"):
        engine.set_state(np.zeros(size + 1))
    with pytest.raises(ValueError, match="NaN or inf"):
        engine.set_state(np.full(size, np.nan))
    with pytest.raises(ValueError, match=r"spec must be an int in \[0, 8191\], got 1048576"):
        engine.get_state(spec=1 << 20)


def test_unknown_field_name(engine):
    with pytest.raises(KeyError, match="mjData has no array field named 'qposs'"):
        engine.field("qposs")


def test_use_after_close_raises_but_views_stay_valid():
    eng = Engine(SCENES["contact_pile"](), 2, 2)
    qpos = eng.qpos
    expected = qpos.copy()
    eng.close()
    for call in (lambda: eng.step(), eng.get_state, eng.forward,
                 lambda: eng.set_state(np.zeros(eng.state_size())), lambda: eng.field("qvel")):
        with pytest.raises(RuntimeError, match="the engine is closed"):
            call()
    del eng
    gc.collect()
    np.testing.assert_array_equal(qpos, expected)  # the view keeps the memory alive


# ---------------------------------------------------------------- views and state
def test_views_are_zero_copy_and_live(engine):
    model = SCENES["contact_pile"]()
    qpos = engine.qpos
    assert qpos.shape == (3, model.nq) and qpos.dtype == np.float64
    assert engine.qvel.shape == (3, model.nv) and engine.ctrl.shape == (3, model.nu)
    assert engine.field("xpos").shape == (3, model.nbody, 3)
    assert engine.field("eq_active").dtype == np.uint8
    engine.step(nstep=3)
    assert qpos is engine.qpos and not np.shares_memory(qpos, engine.get_state())
    np.testing.assert_array_equal(qpos, engine.get_state(spec=mujoco.mjtState.mjSTATE_QPOS))
    # writes through a view reach the physics: a ctrl view write acts like passing ctrl
    engine.ctrl[:] = 0.7
    engine.step(nstep=2)
    np.testing.assert_array_equal(engine.ctrl, 0.7)
    assert not engine.time.flags.writeable and not engine.status.flags.writeable


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_state_round_trip_is_exact(scene):
    model = SCENES[scene]()
    rng = np.random.default_rng()
    with Engine(model, 4, 2) as eng:
        for _ in range(3):
            eng.step(random_controls(model, rng, 4), nstep=5)
        saved = eng.get_state()
        eng.step(nstep=5)  # keeps the current ctrl, which is part of the saved state
        first = eng.get_state()
        eng.step(random_controls(model, rng, 4), nstep=5)
        eng.set_state(saved)
        np.testing.assert_array_equal(eng.get_state(), saved)
        eng.step(None, nstep=5)
        np.testing.assert_array_equal(eng.get_state(), first)


def test_group_starts_from_one_saved_state():
    model = SCENES["contact_pile"]()
    with Engine(model, 6, 2) as eng:
        eng.step(random_controls(model, np.random.default_rng(), 6), nstep=20)
        one = eng.get_state(env_ids=[4])[0]
        eng.set_state(one, env_ids=[0, 1, 2])
        states = eng.get_state(env_ids=[0, 1, 2])
        np.testing.assert_array_equal(states, np.broadcast_to(one, states.shape))
        ctrl = np.full((3, model.nu), 0.3)
        eng.step(ctrl, nstep=15, env_ids=[0, 1, 2])
        np.testing.assert_array_equal(eng.qpos[0], eng.qpos[1])
        np.testing.assert_array_equal(eng.qpos[0], eng.qpos[2])


def test_robosuite_style_time_qpos_qvel_spec():
    model = SCENES["robosuite_lift"]()
    spec = int(mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS |
               mujoco.mjtState.mjSTATE_QVEL)
    with Engine(model, 2, 1) as eng:
        assert eng.state_size(spec) == 1 + model.nq + model.nv
        flat = eng.get_state(spec=spec)
        np.testing.assert_array_equal(flat[:, 1:1 + model.nq], eng.qpos)


# ---------------------------------------------------------------- failing envs
def test_unstable_env_is_flagged_and_neighbours_match_reference():
    model = SCENES["contact_pile"]()
    rng = np.random.default_rng()
    with Engine(model, 3, 2) as eng:
        init = eng.get_state()
        eng.qvel[1, :] = 1e12  # MuJoCo's bad-qvel check fires on the next step
        ctrls = [random_controls(model, rng, 3) for _ in range(4)]
        for c in ctrls:
            eng.step(c, nstep=10)
        assert eng.status.tolist() == [EnvStatus.OK, EnvStatus.UNSTABLE, EnvStatus.OK]
        assert "QVEL" in eng.status_message(1).upper()
        for env in (0, 2):
            d = mujoco.MjData(model)
            mujoco.mj_setState(model, d, init[env], FULL_STATE_SPEC)
            for c in ctrls:
                d.ctrl[:] = c[env]
                for _ in range(10):
                    mujoco.mj_step(model, d)
            np.testing.assert_array_equal(eng.qpos[env], d.qpos)
            np.testing.assert_array_equal(eng.qvel[env], d.qvel)
        # a fresh state clears the flag and the env steps again
        eng.set_state(init[1], env_ids=[1])
        assert eng.status[1] == EnvStatus.OK
        eng.step(nstep=2)
        assert eng.status.tolist() == [0, 0, 0]


def test_mujoco_error_becomes_exception_and_spares_other_envs():
    # 32 KB of arena: enough while the objects fall, not once contacts appear.
    model = mujoco.MjModel.from_xml_string(
        contact_pile_xml(24).replace('memory="20M"', 'memory="32K"'))
    with Engine(SCENES["contact_pile"](), 1, 1) as roomy:
        roomy.step(nstep=600)
        piled = roomy.get_state()[0]
    with Engine(model, 3, 2) as eng:
        fresh = eng.get_state(env_ids=[0])[0]
        eng.set_state(piled, env_ids=[2])
        with pytest.raises(MujocoError, match=r"env 2: mj_stackAlloc: out of memory"):
            eng.step(nstep=5)
        assert eng.status.tolist() == [EnvStatus.OK, EnvStatus.OK, EnvStatus.ERROR]
        d = mujoco.MjData(model)
        mujoco.mj_setState(model, d, fresh, FULL_STATE_SPEC)
        for _ in range(5):
            mujoco.mj_step(model, d)
        np.testing.assert_array_equal(eng.qpos[0], d.qpos)
        eng.step(nstep=1)  # the failed env is skipped; no second error
        assert eng.status[2] == EnvStatus.ERROR
