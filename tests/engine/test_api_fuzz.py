"""Fuzzing the Engine API's arguments with hypothesis (docs/engine.md, "Errors").

Every call either does what docs/engine.md says (checked where cheap: which envs moved, by how
much, what state was stored, what shapes came back) or raises one of the documented exception
kinds with a one-line message that names the offending argument. Never a crash, a raw
pybind11 conversion error, or a silent wrong result (a bool taken as an int, a string as a list
of predicates). Example counts are small and deadlines off so the file runs in well under a
minute on 2 CPU cores.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vlarl_fast import Engine
from vlarl_fast.engine import EngineClosedError
from vlarl_fast.engine.engine import FULL_STATE_SPEC
from vlarl_fast.engine.predicates import InContact, InRegion, JointAbove, JointBelow

from .scenes import camera_model, robosuite_lift_osc_env

INT32_MAX = 2**31 - 1
DOCUMENTED = (ValueError, TypeError, IndexError, KeyError, MemoryError, RuntimeError)
RAW_BINDING_ERRORS = ("incompatible function arguments", "incompatible constructor arguments",
                      "Unable to cast", "unhashable type", "object has no attribute")

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _named(exc: BaseException, *names: str) -> None:
    """exc is a documented kind whose one-line message names one of `names`."""
    assert isinstance(exc, DOCUMENTED), f"undocumented exception {exc!r}"
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    assert msg and "\n" not in msg.strip(), f"not a one-line message: {msg!r}"
    assert not any(raw in msg for raw in RAW_BINDING_ERRORS), f"raw binding error: {msg!r}"
    assert any(n in msg for n in names), f"{type(exc).__name__}({msg!r}) names none of {names}"
    event(f"raised {type(exc).__name__}")


# ---------------------------------------------------------------- strategies
def mostly(good, bad):
    """good two times in three (st.one_of would weigh every flattened branch alike)."""
    return st.integers(0, 2).flatmap(lambda k: bad if k == 0 else good)


def bad_ints(low: int, high: int = INT32_MAX):
    """Integers outside [low, high] and values that are not ints at all."""
    return st.one_of(
        st.integers(max_value=low - 1),
        st.integers(min_value=high + 1),
        st.sampled_from([2**31, 2**63, -2**31 - 1]),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=3),
        st.none(),
        st.lists(st.integers(0, 2), max_size=2),
    )


def int_args(low: int, high: int, hard_high: int = INT32_MAX):
    """Valid ints in [low, high] (as int or numpy ints) mixed with bad values for the
    documented range [low, hard_high]."""
    good = st.integers(low, high)
    return mostly(st.one_of(good, good.map(np.int64), good.map(np.int32)),
                  bad_ints(low, hard_high))


FLOAT_ELEMENTS = st.floats(-5, 5) | st.sampled_from([np.nan, np.inf, -np.inf, 1e300])


def _cast(pair):
    array, dtype = pair
    with np.errstate(all="ignore"):
        return array.astype(dtype)


def arrays_near(shape: tuple):
    """Arrays of the given shape or a neighbouring one, with assorted dtypes and values."""
    shapes = st.sampled_from([shape, shape[:-1] + (shape[-1] + 1,), shape[1:] or (1,),
                              (0,) + shape[1:], shape + (1,), ()])
    floats = st.tuples(hnp.arrays(np.float64, shapes, elements=FLOAT_ELEMENTS),
                       st.sampled_from([np.float64, np.float32, np.float16])).map(_cast)
    ints = hnp.arrays(st.sampled_from([np.int64, np.int32, np.uint8]), shapes,
                      elements=st.integers(0, 3))
    other = hnp.arrays(st.sampled_from([np.bool_, np.complex128]), shapes)
    odd = st.sampled_from([None, "abc", [[1.0], [2.0, 3.0]], np.array([[None]], dtype=object),
                           {"a": 1}])
    return mostly(st.one_of(floats, floats.map(lambda a: a.tolist())),
                  st.one_of(ints, other, odd))


def env_id_args(num_envs: int):
    ints = st.integers(-2, num_envs + 1)
    good = st.one_of(
        st.none(),
        st.lists(st.integers(0, num_envs - 1), min_size=1, max_size=num_envs, unique=True))
    return mostly(good, st.one_of(
        st.lists(ints, max_size=num_envs + 1),
        ints,
        st.lists(ints, max_size=3).map(np.array),
        st.lists(st.booleans(), min_size=1, max_size=3),
        st.lists(st.floats(0, 2), min_size=1, max_size=2),
        st.sampled_from(["0", [[0, 1]], [[0], [1, 2]], {0, 1}, 2**40, [2**40], True]),
    ))


def _ids(engine, env_ids) -> list[int]:
    if env_ids is None:
        return list(range(engine.num_envs))
    return [int(i) for i in np.atleast_1d(np.asarray(env_ids))]


# ---------------------------------------------------------------- construction
@FUZZ
@given(num_envs=int_args(1, 6), num_threads=st.one_of(st.none(), int_args(1, 3, 1024)))
def test_engine_arguments(num_envs, num_threads):
    try:
        engine = Engine(camera_model(), num_envs, num_threads)
    except DOCUMENTED as exc:
        _named(exc, "num_envs", "num_threads")
        return
    with engine:
        assert engine.num_envs == int(num_envs)
        assert 1 <= engine.num_threads <= int(num_envs) if num_threads is None else True
        engine.step(nstep=2)
        np.testing.assert_allclose(engine.time, 2 * engine.timestep)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    cameras=mostly(st.sampled_from([["front"], "top", ["front", "top"]]),
                   st.sampled_from([[], None, ["nope"], [3], 5, ["front", "front"]])),
    height=mostly(st.integers(1, 24), st.sampled_from([0, -1, 16385, 20000, INT32_MAX, 2**31,
                                                       True, 2.0, "8"])),
    width=mostly(st.integers(1, 24), st.sampled_from([0, 20000, INT32_MAX, 2**40, None])),
    options=st.fixed_dictionaries({}, optional={
        "image_convention": mostly(st.sampled_from(["mujoco", "opengl", "openvla"]),
                                   st.sampled_from(["upside", 3, ["mujoco"]])),
        "fast": mostly(st.booleans(), st.sampled_from(["yes", 2])),
        "max_geom": mostly(st.sampled_from([1000, 1]), st.sampled_from([0, 2**21, True, 1.5])),
        "geom_groups": mostly(st.sampled_from([(0, 1, 2), (1,)]),
                              st.sampled_from([[7], "ab", 5, [True]])),
    }))
def test_camera_arguments(cameras, height, width, options):
    try:
        engine = Engine(camera_model(), 1, 1, cameras=cameras, height=height, width=width,
                        **options)
    except DOCUMENTED as exc:
        _named(exc, "camera", "height", "width", "frame", "image_convention", "fast",
               "max_geom", "geom_groups", "rendering option")
        return
    with engine:
        if engine.frames is None:
            assert not engine.cameras
            return
        assert engine.frames.shape == (1, len(engine.cameras), int(height), int(width), 3)
        engine.forward()
        assert engine.render() is engine.frames
        event("rendered")


def test_frame_larger_than_the_renderer_names_the_maximum():
    """Not 'rendering is unavailable' (as if EGL were missing): the size and the maximum."""
    with Engine(camera_model(), 1, 1, cameras=["front"], height=8, width=8) as small:
        limit = small._renderer.max_size  # 16384 on llvmpipe, 32768 on NVIDIA GPUs
    assert limit >= 4096
    with pytest.raises(ValueError, match=rf"height={limit + 1}, width=8: the frame exceeds the "
                                         rf"renderer's maximum size of {limit} x {limit} pixels"):
        Engine(camera_model(), 1, 1, cameras=["front"], height=limit + 1, width=8)
    if limit < 20000:
        with pytest.raises(ValueError, match="height=20000, width=20000: the frame exceeds"):
            Engine(camera_model(), 1, 1, cameras=["front"], height=20000, width=20000)


# ---------------------------------------------------------------- stepping and state
@pytest.fixture(scope="module")
def engine():
    eng = Engine(camera_model(), 3, 2, cameras=["front"], height=8, width=8)
    eng.forward()
    yield eng, eng.get_state()
    eng.close()


@FUZZ
@given(ctrl=st.one_of(st.none(), arrays_near((3, 1)), arrays_near((2, 1))),
       nstep=int_args(0, 12), env_ids=env_id_args(3))
def test_step_arguments(engine, ctrl, nstep, env_ids):
    eng, start = engine
    eng.set_state(start)
    try:
        eng.step(ctrl, nstep=nstep, env_ids=env_ids)
    except DOCUMENTED as exc:
        assert not isinstance(exc, EngineClosedError)
        _named(exc, "ctrl", "nstep", "env_id", "env id")
        np.testing.assert_array_equal(eng.get_state(), start)  # nothing stepped
        return
    assert isinstance(nstep, (int, np.integer)) and not isinstance(nstep, bool)
    ids = _ids(eng, env_ids)
    moved = eng.get_state()
    for env in range(eng.num_envs):
        if env in ids:
            assert eng.time[env] == pytest.approx(nstep * eng.timestep)
            if ctrl is not None:
                row = ids.index(env)
                np.testing.assert_array_equal(eng.ctrl[env], np.asarray(ctrl, float)[row])
        else:
            np.testing.assert_array_equal(moved[env], start[env])


@FUZZ
@given(spec=st.one_of(st.none(), st.just(FULL_STATE_SPEC),
                      st.sampled_from([int(mujoco.mjtState.mjSTATE_QPOS), 0, 8191]),
                      bad_ints(0, 8191)),
       env_ids=env_id_args(3), data=st.data())
def test_state_arguments(engine, spec, env_ids, data):
    eng, start = engine
    eng.set_state(start)
    try:
        size = eng.state_size(spec)
        got = eng.get_state(env_ids=env_ids, spec=spec)
    except DOCUMENTED as exc:
        _named(exc, "spec", "env_id", "env id")
        return
    ids = _ids(eng, env_ids)
    assert got.shape == (len(ids), size) and got.dtype == np.float64
    states = data.draw(st.one_of(arrays_near((size,)), arrays_near((len(ids), size))))
    try:
        eng.set_state(states, env_ids=env_ids, spec=spec)
    except DOCUMENTED as exc:
        _named(exc, "states", "spec", "env_id", "env id")
        return
    arr = np.asarray(states)
    assert np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all()
    if spec is None or int(spec) == FULL_STATE_SPEC:
        expected = np.broadcast_to(arr.astype(np.float64), (len(ids), size))
        np.testing.assert_array_equal(eng.get_state(env_ids=env_ids, spec=spec), expected)


@FUZZ
@given(env_ids=env_id_args(3),
       name=st.one_of(st.sampled_from(["qpos", "xpos", "ctrl", "nope"]), st.text(max_size=4),
                      st.integers(), st.none()),
       env_id=int_args(0, 2, 2))
def test_render_field_and_status_arguments(engine, env_ids, name, env_id):
    eng, start = engine
    try:
        frames = eng.render(env_ids)
        assert frames is eng.frames and frames.shape == (3, 1, 8, 8, 3)
    except DOCUMENTED as exc:
        _named(exc, "env_id", "env id")
    try:
        view = eng.field(name)
        assert view.shape[0] == 3
    except DOCUMENTED as exc:
        _named(exc, "field")
    try:
        assert isinstance(eng.status_message(env_id), str)
    except DOCUMENTED as exc:
        _named(exc, "env_id")


# ---------------------------------------------------------------- chunks and predicates
@pytest.fixture(scope="module")
def lift():
    env = robosuite_lift_osc_env()
    eng = Engine.from_robosuite(env, 2, 2)
    yield eng, eng.get_state()
    eng.close()


PREDICATES = st.one_of(
    st.builds(InRegion, st.sampled_from(["cube_main", "nobody"]),
              st.just([-1.0, -1.0, 0.0]), st.sampled_from([[1.0, 1.0, 2.0], [-2.0, 0.0, 0.0]])),
    st.builds(JointAbove, st.sampled_from(["robot0_joint1", "nope"]), st.floats(-1, 1)),
    st.builds(JointBelow, st.just("gripper0_finger_joint1"), st.floats(-1, 1)),
    st.builds(InContact, st.just(["cube_main"]), st.just(["table"]),
              st.sampled_from(["body", "geom", "site"])),
)


@FUZZ
@given(predicates=mostly(st.one_of(PREDICATES, st.lists(PREDICATES, max_size=3)),
                         st.sampled_from(["str", ["str"], 3, None, {"kind": 0}, [None],
                                          [{"kind": 0}], b"x", (), []])),
       env_ids=env_id_args(2))
def test_set_success_arguments(lift, predicates, env_ids):
    eng, _ = lift
    try:
        eng.set_success(predicates, env_ids=env_ids)
    except DOCUMENTED as exc:
        _named(exc, "set_success", "predicate", "no body named", "no joint named",
               "no geom named", "low must be", "by:", "env_id", "env id", "have no geoms")
        return
    count = 1 if hasattr(predicates, "resolve") else len(predicates)
    for env in _ids(eng, env_ids):
        assert eng.num_success_predicates(env) == count


@FUZZ
@given(actions=st.one_of(arrays_near((2, 3, 7)), arrays_near((2, 7)), arrays_near((1, 2, 7))),
       env_ids=env_id_args(2),
       render=st.sampled_from([None, "none", "end", "every", "sometimes", 3, ["none"]]))
def test_step_chunk_arguments(lift, actions, env_ids, render):
    eng, start = lift
    eng.set_initial_joint(eng.spec.initial_joint)
    eng.set_state(start)
    eng.set_success([])
    try:
        res = eng.step_chunk(actions, env_ids=env_ids, render=render)
    except DOCUMENTED as exc:
        _named(exc, "actions", "env_id", "env id", "render")
        return
    arr = np.asarray(actions)
    k = 1 if arr.ndim == 2 else arr.shape[1]
    rows = len(_ids(eng, env_ids))
    assert res.eef_pos.shape == (rows, k, 3) and res.steps_executed.tolist() == [k] * rows
    assert np.isfinite(res.eef_pos).all()


@FUZZ
@given(q=arrays_near((7,)), env_id=int_args(0, 1, 1))
def test_controller_arguments(lift, q, env_id):
    eng, _ = lift
    try:
        eng.set_initial_joint(q)
        np.testing.assert_array_equal(eng.initial_joint(0), np.asarray(q, float))
    except DOCUMENTED as exc:
        _named(exc, "q")
    try:
        pos, ori, grip = eng.controller_goal(env_id)
        assert pos.shape == (3,) and ori.shape == (3, 3)
    except DOCUMENTED as exc:
        _named(exc, "env_id")
