"""EnginePool: engines of different models on one worker pool, chunks over any mix of their envs
as one native job, EnvPool-style send/recv. Reference: each engine alone (its own threads,
synchronous Engine.step_chunk) from the same states with the same actions: states, records,
success and frames must be identical bit for bit, for 1 and 2 threads and any completion order."""

import signal
import threading
import time

import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast.engine import EngineClosedError, EnginePool
from vlarl_fast.engine.predicates import JointBelow

from . import robosuite_ref as R

SCENES = ("Lift", "Door")  # two models of different sizes (nq 9 + 7 free, 9 + 2 hinge)
CAMS = dict(cameras=["agentview", "robot0_eye_in_hand"], height=24, width=32)
N = 3  # envs per model


def _starts(env, rng):
    return R.diverse_states(env, rng, N)


def _engines(pool_or_threads):
    out = []
    for scene in SCENES:
        env = R.make_env(scene)
        if isinstance(pool_or_threads, EnginePool):
            out.append(Engine.from_robosuite(env, N, pool=pool_or_threads, **CAMS))
        else:
            out.append(Engine.from_robosuite(env, N, pool_or_threads, **CAMS))
    return out


def _inputs(seed, k):
    rng = np.random.default_rng(seed)
    states = [_starts(R.make_env(s), rng) for s in SCENES]
    actions = [rng.uniform(-1, 1, size=(N, k, 7)) for _ in SCENES]
    return states, actions


def _snapshot(eng, res_steps, res_success):
    return dict(state=eng.get_state().copy(), frames=eng.frames.copy(),
                steps=np.asarray(res_steps).copy(), success=np.asarray(res_success).copy())


def _reference(states, actions, stop_env0=False):
    out = []
    for eng_states, acts, eng in zip(states, actions, _engines(1)):
        with eng:
            eng.set_state(eng_states)
            if stop_env0:
                eng.set_success(JointBelow("gripper0_finger_joint1", 1.0), env_ids=[0])
            r = eng.step_chunk(acts)
            out.append(_snapshot(eng, r.steps_executed, r.success))
    return out


def _assert_equal(got, want):
    for g, w, scene in zip(got, want, SCENES):
        for key in w:
            np.testing.assert_array_equal(g[key], w[key], err_msg=f"{scene}: {key}")


@pytest.mark.parametrize("threads", [1, 2])
def test_mixed_model_job_equals_each_engine_alone(threads):
    states, actions = _inputs(3, 5)
    want = _reference(states, actions, stop_env0=True)
    with EnginePool(threads) as pool:
        engines = _engines(pool)
        for eng, st in zip(engines, states):
            eng.set_state(st)
            eng.set_success(JointBelow("gripper0_finger_joint1", 1.0), env_ids=[0])
        tags = [np.arange(N) + i * N for i in range(len(engines))]
        got_tags = pool.step_chunk([(e, None, a) for e, a in zip(engines, actions)], tags)
        assert sorted(got_tags.tolist()) == list(range(N * len(engines)))
        got = []
        for eng in engines:
            r = pool.result(eng, None, 5)
            got.append(_snapshot(eng, r.steps_executed, r.success))
            eng.close()
    _assert_equal(got, want)
    assert got[0]["steps"][0] == 1 and got[0]["success"][0]  # the predicate stopped env 0


@pytest.mark.parametrize("threads", [1, 2])
def test_async_any_completion_order_is_bit_identical(threads):
    states, actions = _inputs(11, 4)
    want = _reference(states, actions)
    rng = np.random.default_rng(threads)
    with EnginePool(threads) as pool:
        engines = _engines(pool)
        for eng, st in zip(engines, states):
            eng.set_state(st)
        # Envs sent in random groups, several sends in flight, received one at a time.
        envs = [(e, i) for e in range(len(engines)) for i in range(N)]
        order = rng.permutation(len(envs))
        for chunk in np.array_split(order, 3):
            parts, tags = [], []
            for e in range(len(engines)):
                local = [envs[j][1] for j in chunk if envs[j][0] == e]
                if local:
                    parts.append((engines[e], local, actions[e][local]))
                    tags.append([e * N + i for i in local])
            pool.send(parts, tags)
        seen = []
        while pool.in_flight:
            seen += pool.recv(1).tolist()
        assert sorted(seen) == list(range(len(envs)))
        got = []
        for eng in engines:
            r = pool.result(eng, None, 4)
            got.append(_snapshot(eng, r.steps_executed, r.success))
            eng.close()
    _assert_equal(got, want)


def test_send_returns_before_the_chunk_ends():
    env = R.make_env("Lift")
    with EnginePool(1) as pool, Engine.from_robosuite(env, 2, pool=pool) as eng:
        t0 = time.perf_counter()
        pool.send([(eng, None, np.zeros((2, 60, 7)))])
        sent = time.perf_counter() - t0
        tags = pool.recv(2)
        total = time.perf_counter() - t0
        assert sorted(tags.tolist()) == [0, 1]
        assert sent < 0.25 * total, (sent, total)


def test_bad_arguments_raise_one_line_errors():
    lift, door = R.make_env("Lift"), R.make_env("Door")
    with EnginePool(1) as pool, Engine.from_robosuite(lift, 2, pool=pool) as eng, \
            Engine.from_robosuite(door, 2, 1) as alone:
        acts = np.zeros((1, 2, 7))
        with pytest.raises(IndexError, match=r"^env id 5 is out of range \[0, 2\)$"):
            pool.send([(eng, [5], acts)])
        with pytest.raises(ValueError, match="not built on this pool"):
            pool.send([(alone, [0], acts)])
        with pytest.raises(ValueError, match=r"actions must have shape \(1, K, 7\)"):
            pool.send([(eng, [0], np.zeros((1, 2, 3)))])
        pool.send([(eng, [0], np.zeros((1, 40, 7)))])
        with pytest.raises(ValueError, match=r"^send: env 0 is already in flight"):
            pool.send([(eng, [1], acts)], [[0]])
        assert pool.recv(1).tolist() == [0]
        with pytest.raises(ValueError, match="min_envs"):
            pool.recv(-1)
        for err in (IndexError, ValueError):
            assert "\n" not in str(err)


def test_engine_close_during_an_outstanding_send():
    env = R.make_env("Lift")
    with EnginePool(2) as pool:
        eng = Engine.from_robosuite(env, 2, pool=pool)
        pool.send([(eng, None, np.zeros((2, 400, 7)))])
        time.sleep(0.05)
        t0 = time.perf_counter()
        eng.close()  # waits for the job, which stops at its next control step
        assert time.perf_counter() - t0 < 2.0
        with pytest.raises(EngineClosedError):
            pool.recv(2)
        assert pool.in_flight == 0
        with pytest.raises(EngineClosedError):
            pool.send([(eng, None, np.zeros((2, 1, 7)))])


def test_pool_close_drops_queued_sends_and_waits_for_the_running_one():
    env = R.make_env("Lift")
    pool = EnginePool(1)
    with Engine.from_robosuite(env, 2, pool=pool) as eng:
        pool.send([(eng, [0], np.zeros((1, 30, 7)))])
        pool.send([(eng, [1], np.zeros((1, 30, 7)))])
        pool.close()
        assert pool.closed and pool.in_flight <= 1
        with pytest.raises(EngineClosedError):
            pool.send([(eng, [1], np.zeros((1, 1, 7)))], [[7]])
        eng.step_chunk(np.zeros((2, 1, 7)))  # the engine itself still steps on the threads


def test_keyboard_interrupt_reaches_recv():
    env = R.make_env("Lift")
    # Python's own SIGINT handler, whatever an earlier test or library left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with EnginePool(2) as pool, Engine.from_robosuite(env, 2, pool=pool) as eng:
        pool.send([(eng, None, np.zeros((2, 2000, 7)))])
        timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        timer.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.recv(2)
        finally:
            timer.join()
            signal.signal(signal.SIGINT, previous)
        assert time.perf_counter() - t0 < 3.0
        assert pool.in_flight == 0
        pool.send([(eng, None, np.zeros((2, 1, 7)))])  # the pool works afterwards
        assert sorted(pool.recv(2).tolist()) == [0, 1]
