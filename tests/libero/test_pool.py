"""One pool for a whole LIBERO suite: envs of several tasks (one MuJoCo model each) stepped by one
native job on one set of worker threads, synchronously or with send/recv. Reference: each task on
its own `LiberoTaskEngine` (own threads, its own native calls), from the same init states with
the same actions: states, frames, success and executed steps equal bit for bit, for 1 and 2
threads and any completion order."""

import numpy as np
import pytest

from vlarl_fast.envs.chunk_env import ChunkResult
from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

from conftest import solved_state

OPTS = dict(cameras=["agentview", "robot0_eye_in_hand"], height=24, width=24, settle_steps=2,
            max_steps=16)
K = 4


def _setup(get_scene):
    """Tasks, init states (env 1 starts solved: it stops at its first policy step), actions."""
    tasks = [get_task("libero_spatial", 0), get_task("libero_goal", 0),
             get_task("libero_spatial", 1), get_task("libero_goal", 0)]
    states = [t.init_states()[i] for t, i in zip(tasks, [0, 1, 2, 3])]
    states[0] = solved_state(get_scene("libero_spatial", 0), states[0])
    rng = np.random.default_rng(7)
    return tasks, states, rng.uniform(-0.5, 0.5, size=(2, len(tasks), K, 7))


_REFERENCE = {}


def _reference(get_scene, tasks, states, actions):
    """Per env: (state, frames after each chunk, success, executed) on its own task engine
    (computed once per session: every test here uses the same episodes)."""
    if "ref" not in _REFERENCE:
        _REFERENCE["ref"] = _compute_reference(get_scene, tasks, states, actions)
    return _REFERENCE["ref"]


def _compute_reference(get_scene, tasks, states, actions):
    out = []
    for i, task in enumerate(tasks):
        eng = LiberoTaskEngine(get_scene(task.suite, task.index), 1, 1, **OPTS)
        try:
            eng.reset(env_ids=[0], init_states=states[i][None], render=False)
            rows = []
            for chunk in actions:
                r = eng.step(chunk[i][None], render=True)
                rows.append((r.frames[0].copy(), bool(r.success[0]), int(r.executed[0]),
                             bool(r.done[0])))
            out.append((eng.engine.get_state()[0].copy(), rows))
        finally:
            eng.close()
    return out


def _check(env, results, want):
    for c, res in enumerate(results):
        for i in range(len(want)):
            frame, success, executed, done = want[i][1][c]
            assert bool(res.success[i]) == success and int(res.executed[i]) == executed, (c, i)
            assert bool(res.done[i]) == done
            if not done:
                np.testing.assert_array_equal(res.frames[i], frame, err_msg=f"chunk {c} env {i}")
            else:
                assert not res.frames[i].any()
    for i in range(len(want)):
        eng, local = env.slot_engine[i], env.slot_local[i]
        np.testing.assert_array_equal(eng.engine.get_state([local])[0], want[i][0],
                                      err_msg=f"env {i}")


@pytest.mark.parametrize("threads", [1, 2])
def test_mixed_task_pool_equals_per_task_engines(threads, get_scene, scene_dict):
    tasks, states, actions = _setup(get_scene)
    want = _reference(get_scene, tasks, states, actions)
    assert want[0][1][0][1] and want[0][1][0][2] < K  # the solved env stops mid-chunk
    env = LiberoChunkEnv(len(tasks), threads, scenes=scene_dict, **OPTS)
    try:
        assert env.pool.num_threads == threads
        assert all(e.engine._pool is env.pool for e in env.all_engines())
        env.reset(states, tasks, render=False)
        assert all(e.native_predicates is not None for e in env.all_engines())
        results = [env.step_chunk(chunk) for chunk in actions]
        _check(env, results, want)
    finally:
        env.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_send_recv_any_order_equals_per_task_engines(threads, get_scene, scene_dict):
    tasks, states, actions = _setup(get_scene)
    want = _reference(get_scene, tasks, states, actions)
    env = LiberoChunkEnv(len(tasks), threads, scenes=scene_dict, **OPTS)
    rng = np.random.default_rng(threads)
    try:
        env.reset(states, tasks, render=False)
        results = []
        for chunk in actions:
            stages = np.array_split(rng.permutation(len(tasks)), 2)  # two sends in flight
            for ids in stages:
                env.send(chunk[ids], ids)
            n = len(tasks)
            rows = {}
            while env.in_flight:
                got, res = env.recv(1)
                assert got.size >= 1
                for j, i in enumerate(got.tolist()):
                    rows[i] = (res.executed[j], res.success[j], res.done[j], res.frames[j])
            assert sorted(rows) == list(range(n))
            results.append(ChunkResult(executed=np.array([rows[i][0] for i in range(n)]),
                                       success=np.array([rows[i][1] for i in range(n)]),
                                       done=np.array([rows[i][2] for i in range(n)]),
                                       frames=np.stack([rows[i][3] for i in range(n)])))
        _check(env, results, want)
    finally:
        env.close()


def test_send_errors_are_one_line(get_scene, scene_dict):
    task = get_task("libero_goal", 0)
    env = LiberoChunkEnv(2, 1, scenes=scene_dict, **OPTS)
    try:
        env.reset([task.init_states()[0]] * 2, [task, task], render=False)
        acts = np.zeros((1, K, 7))
        with pytest.raises(IndexError, match=r"env_ids must lie in \[0, 2\)"):
            env.send(acts, [2])
        env.send(acts, [0])
        with pytest.raises(ValueError, match=r"^send: envs \[0\] are already in flight"):
            env.send(acts, [0])
        with pytest.raises(RuntimeError, match="in flight"):
            env.step_chunk(np.zeros((2, K, 7)))
        got, _ = env.recv(1)
        assert got.tolist() == [0] and env.in_flight == 0
    finally:
        env.close()
