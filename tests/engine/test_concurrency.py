"""Lifetime, threads and interrupts (docs/engine.md, "Lifetime, threads and interrupts").

close() from another thread during every kind of call (render, step, step_chunk, set_state,
get_state, a mix), calls from several threads at once, and Ctrl-C (SIGINT) during long native
calls. Nothing may crash; the closed or interrupted thread gets a clean Python exception, and an
engine that was interrupted (not closed) keeps stepping bit-identically to MuJoCo.

Several hundred close races in all, sized to stay well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import gc
import random
import signal
import threading
import time

import mujoco
import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast.engine import EngineClosedError, EnvStatus
from vlarl_fast.engine.engine import FULL_STATE_SPEC

from .scenes import SCENES, camera_model, robosuite_lift_osc_env

CLOSE_BOUND_S = 2.0  # close() during a 10**7-step call: one mj_step per worker, not the call
SIGINT_BOUND_S = 1.0  # signal -> KeyboardInterrupt (measured 1-30 ms on a loaded 2-core box)


# ---------------------------------------------------------------- close from another thread
def _close_during(make_engine, call, iterations: int, seed: int) -> list[float]:
    """Per iteration: a thread loops call(engine, i) until it raises; this thread closes the
    engine after a random short delay (sometimes before the first call returned). The thread
    must end with EngineClosedError and nothing may crash. Returns the close() durations."""
    rng = random.Random(seed)
    durations = []
    for i in range(iterations):
        engine = make_engine(i)
        views = [engine.qpos, engine.status, engine.time]
        if engine.frames is not None:
            views.append(engine.frames)
        first_done = threading.Event()
        outcome: dict = {}

        def loop():
            try:
                while True:
                    call(engine, i)
                    first_done.set()
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                outcome["exc"] = exc
            finally:
                first_done.set()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        if rng.random() < 0.7:
            first_done.wait(0.1)  # mostly close during a later call, sometimes the first
        time.sleep(rng.uniform(0, 0.004))
        t0 = time.perf_counter()
        engine.close()
        durations.append(time.perf_counter() - t0)
        thread.join(20)
        assert not thread.is_alive(), "the calling thread did not return after close()"
        exc = outcome.get("exc")
        assert isinstance(exc, EngineClosedError), f"iteration {i}: {exc!r}"
        assert isinstance(exc, RuntimeError) and "closed" in str(exc)
        with pytest.raises(EngineClosedError, match="closed"):
            call(engine, i)
        del engine
        if i % 10 == 0:
            gc.collect()
        for v in views:  # views handed out before close() keep their memory
            assert np.isfinite(v.astype(np.float64).sum())
    return durations


def test_close_during_render():
    def make(i):
        return Engine(camera_model(), 2, 2, cameras=["front", "top"], height=24, width=24)

    durations = _close_during(make, lambda e, i: e.render(), iterations=40, seed=1)
    assert max(durations) < CLOSE_BOUND_S


def test_close_during_step():
    model = SCENES["contact_pile"]()

    def call(engine, i):
        engine.step(nstep=(1, 40, 10**7)[i % 3])

    durations = _close_during(lambda i: Engine(model, 4, 2), call, iterations=150, seed=2)
    assert max(durations) < CLOSE_BOUND_S  # a 10**7-step call is stopped, not waited for


def test_close_during_set_and_get_state():
    model = SCENES["contact_pile"]()
    state = Engine(model, 1, 1).get_state()[0]

    def call(engine, i):
        engine.set_state(state)
        engine.get_state()
        engine.forward(env_ids=[i % 4])
        engine.status_message(0)

    _close_during(lambda i: Engine(model, 4, 2), call, iterations=120, seed=3)


@pytest.fixture(scope="module")
def lift():
    env = robosuite_lift_osc_env()
    return env, env.sim.get_state().flatten()


def test_close_during_step_chunk(lift):
    env, _ = lift
    rng = np.random.default_rng(4)
    actions = rng.uniform(-1, 1, size=(2, 6, 7))

    def make(i):
        if i % 16 == 0:  # two with cameras, rendering every control step (~2.5 s to build)
            return Engine.from_robosuite(env, 2, 2, cameras=["agentview"], height=16, width=16)
        return Engine.from_robosuite(env, 2, 2)

    def call(engine, i):
        engine.step_chunk(actions, render="every" if engine.frames is not None else "none")

    durations = _close_during(make, call, iterations=32, seed=5)
    assert max(durations) < CLOSE_BOUND_S


def test_close_during_calls_from_many_threads():
    """Five threads (step, render, set_state, get_state, forward) on one engine, then close():
    every thread ends with EngineClosedError."""
    model = camera_model()
    for i in range(10):
        engine = Engine(model, 3, 2, cameras=["front"], height=16, width=16)
        state = engine.get_state()[1]
        calls = [lambda: engine.step(nstep=20), lambda: engine.render(),
                 lambda: engine.set_state(state, env_ids=[i % 3]), lambda: engine.get_state(),
                 lambda: engine.forward()]
        outcomes = [None] * len(calls)

        def loop(k):
            try:
                while True:
                    calls[k]()
            except BaseException as exc:  # noqa: BLE001
                outcomes[k] = exc

        threads = [threading.Thread(target=loop, args=(k,), daemon=True)
                   for k in range(len(calls))]
        for t in threads:
            t.start()
        time.sleep(0.02)
        engine.close()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads)
        assert all(isinstance(exc, EngineClosedError) for exc in outcomes), outcomes


def test_calls_from_several_threads_never_see_each_other_half_done():
    """Every env starts from one state and steps alike, so after any whole call all rows of
    get_state are equal; a get_state inside another thread's step (or set_state) would see
    some envs a step ahead."""
    model = SCENES["contact_pile"]()
    with Engine(model, 4, 2) as engine:
        start = engine.get_state()[0]
        engine.set_state(start)
        stop = threading.Event()
        errors = []

        def stepper():
            try:
                while not stop.is_set():
                    engine.step(nstep=5)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        def resetter():
            try:
                while not stop.is_set():
                    engine.set_state(start)
                    time.sleep(0.001)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=stepper), threading.Thread(target=resetter)]
        for t in threads:
            t.start()
        reads = 0
        deadline = time.perf_counter() + 0.8
        try:
            while time.perf_counter() < deadline:
                states = engine.get_state()
                assert (states == states[0]).all(), "get_state saw a step half done"
                reads += 1
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors
        assert reads > 10


# ---------------------------------------------------------------- Ctrl-C (SIGINT)
@pytest.fixture
def sigint():
    """Python's default SIGINT handler for the test; `send(delay)` sends SIGINT to the main
    thread from a timer thread and returns a dict that receives the send time."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timers = []

    def send(delay: float) -> dict:
        sent: dict = {}

        def fire():
            sent["t"] = time.perf_counter()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        timer = threading.Timer(delay, fire)
        timers.append(timer)
        timer.start()
        return sent

    yield send
    for t in timers:
        t.join()
    signal.signal(signal.SIGINT, previous)


def _reference_steps(model, states: np.ndarray, nstep: int) -> np.ndarray:
    out = []
    for state in states:
        d = mujoco.MjData(model)
        mujoco.mj_setState(model, d, state, FULL_STATE_SPEC)
        for _ in range(nstep):
            mujoco.mj_step(model, d)
        out.append(d.qpos.copy())
    return np.stack(out)


def test_sigint_stops_a_long_step_and_the_engine_steps_on(sigint):
    model = SCENES["contact_pile"]()
    with Engine(model, 4, 2) as engine:
        sent = sigint(0.2)
        with pytest.raises(KeyboardInterrupt):
            engine.step(nstep=50_000_000)  # ~30 minutes uninterrupted
        latency = time.perf_counter() - sent["t"]
        assert latency < SIGINT_BOUND_S, f"KeyboardInterrupt {latency:.3f} s after SIGINT"
        assert engine.time.max() > 0  # the envs keep the whole steps they ran
        assert (engine.status == EnvStatus.OK).all()
        states = engine.get_state()
        expected = _reference_steps(model, states, 20)
        engine.step(nstep=20)
        np.testing.assert_array_equal(engine.qpos, expected)


def test_sigint_stops_a_long_step_chunk(sigint, lift):
    env, start = lift
    rng = np.random.default_rng(6)
    short = rng.uniform(-1, 1, size=(2, 3, 7))
    with Engine.from_robosuite(env, 2, 2) as reference:
        expected = reference.step_chunk(short).eef_pos.copy()
    with Engine.from_robosuite(env, 2, 2) as engine:
        sent = sigint(0.2)
        with pytest.raises(KeyboardInterrupt):
            engine.step_chunk(np.zeros((2, 4000, 7)))  # 100k mj_steps per env uninterrupted
        latency = time.perf_counter() - sent["t"]
        assert latency < SIGINT_BOUND_S, f"KeyboardInterrupt {latency:.3f} s after SIGINT"
        assert engine.time.max() > 0
        engine.set_state(start)
        np.testing.assert_array_equal(engine.step_chunk(short).eef_pos, expected)


def test_sigint_stops_rendering(sigint):
    with Engine(camera_model(), 48, 2, cameras=["front", "top"], height=48, width=48) as engine:
        engine.forward()
        sent = sigint(0.15)
        deadline = time.perf_counter() + 10
        with pytest.raises(KeyboardInterrupt):
            while time.perf_counter() < deadline:
                engine.render()
        latency = time.perf_counter() - sent["t"]
        assert latency < SIGINT_BOUND_S
        assert engine.render().any()  # still renders


def test_signal_handler_exception_propagates_and_a_silent_handler_lets_the_call_finish():
    class Stop(Exception):
        pass

    def raising(signum, frame):
        raise Stop("from the handler")

    model = SCENES["contact_pile"]()
    previous = signal.signal(signal.SIGINT, raising)
    try:
        with Engine(model, 2, 2) as engine:
            threading.Timer(0.1, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT)).start()
            with pytest.raises(Stop, match="from the handler"):
                engine.step(nstep=50_000_000)
            seen = []
            signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
            timer = threading.Timer(0.02, signal.pthread_kill,
                                    (threading.main_thread().ident, signal.SIGINT))
            timer.start()
            before = engine.time.copy()
            engine.step(nstep=4000)  # runs well past the signal
            timer.join()
            assert seen == [signal.SIGINT]
            np.testing.assert_allclose(engine.time - before, 4000 * engine.timestep)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_signal_handler_may_close_the_engine_but_not_call_it():
    model = SCENES["contact_pile"]()
    previous = signal.getsignal(signal.SIGINT)
    try:
        with Engine(model, 2, 2) as engine:
            # another call from the handler (same thread, inside the running call): refused
            signal.signal(signal.SIGINT, lambda s, f: engine.get_state())
            threading.Timer(0.05, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT)).start()
            with pytest.raises(RuntimeError, match="inside another call of the same engine"):
                engine.step(nstep=50_000_000)
            engine.step(nstep=2)  # still usable
            # close() from the handler: the running call ends with EngineClosedError
            signal.signal(signal.SIGINT, lambda s, f: engine.close())
            threading.Timer(0.05, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT)).start()
            with pytest.raises(EngineClosedError, match="closed during the call"):
                engine.step(nstep=50_000_000)
            assert engine.closed
            with pytest.raises(EngineClosedError):
                engine.step()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_calls_on_other_threads_are_not_interrupted(sigint):
    """Python runs signal handlers on the main thread only: a call on another thread runs on."""
    model = SCENES["contact_pile"]()
    with Engine(model, 2, 1) as engine:
        done = []
        finished = threading.Event()

        def work():
            try:
                done.append(engine.step(nstep=12000))  # ~0.5-1 s
            finally:
                finished.set()

        worker = threading.Thread(target=work)
        worker.start()
        sigint(0.01)
        # (Event.wait, not Thread.join: CPython 3.11's join marks a running thread stopped
        # when a signal interrupts it)
        with pytest.raises(KeyboardInterrupt):
            finished.wait(30)  # the main thread is interrupted, the worker's call is not
        assert finished.wait(30)
        worker.join()
        assert done == [None]
        np.testing.assert_allclose(engine.time, 12000 * engine.timestep)
