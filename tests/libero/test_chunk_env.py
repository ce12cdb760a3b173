"""LiberoChunkEnv: env slots over a mix of LIBERO tasks, bound per episode, on native engines.

Every slot's physics equals a single-task `LiberoTaskEngine` run from the same init state with
the same actions, whatever task its slot held before and whichever other slots run beside it."""

import numpy as np
import pytest

from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

from conftest import solved_state


def _single(get_scene, task, init_id, actions):
    eng = LiberoTaskEngine(get_scene(task.suite, task.index), 1, 1, cameras=None, settle_steps=2,
                           max_steps=16)
    try:
        eng.reset(env_ids=[0], init_states=task.init_states()[init_id][None])
        for chunk in actions:
            out = eng.step(chunk[None], render=False)
        return eng.engine.qpos[0].copy(), out
    finally:
        eng.close()


def test_slots_rebind_across_tasks_and_match_single_task_engines(get_scene, scene_dict):
    a, b = get_task("libero_spatial", 0), get_task("libero_goal", 0)
    env = LiberoChunkEnv(3, 1, cameras=None, settle_steps=2, max_steps=16, scenes=scene_dict)
    rng = np.random.default_rng(11)
    rounds = [([a, b, b], [3, 0, 1]), ([b, a, b], [2, 4, 5]), ([a, a, a], [6, 7, 8])]
    try:
        for tasks, inits in rounds:
            states = [t.init_states()[i] for t, i in zip(tasks, inits)]  # sizes differ by task
            env.reset(states, tasks)
            acts = rng.uniform(-0.5, 0.5, size=(2, 3, 4, 7))  # 2 chunks of 4 steps per env
            for chunk in acts:
                out = env.step_chunk(chunk)
            assert out.executed.tolist() == [4, 4, 4] and out.episode_steps.tolist() == [8, 8, 8]
            for slot, (task, init) in enumerate(zip(tasks, inits)):
                got = env.slot_engine[slot].engine.qpos[env.slot_local[slot]]
                want, ref = _single(get_scene, task, init, acts[:, slot])
                assert env.slot_task[slot] is task
                assert np.array_equal(got, want), (task.name, slot)
                assert bool(out.success[slot]) == bool(ref.success[0])
        # three episodes of task a at once: a second engine of task a was added, none rebuilt
        assert sum(e.task.suite == "libero_spatial" for e in env.all_engines()) == 2
    finally:
        env.close()


def test_frames_and_done_rules(get_scene, scene_dict):
    task = get_task("libero_spatial", 0)
    scene = get_scene("libero_spatial", 0)
    env = LiberoChunkEnv(2, 1, cameras=["agentview"], height=32, width=32, settle_steps=10, max_steps=16,
                         scenes=scene_dict)
    states = np.stack([task.init_states()[0], solved_state(scene, task.init_states()[0])])
    try:
        frames = env.reset(states, [task, task])
        assert frames.shape == (2, 1, 32, 32, 3) and frames.dtype == np.uint8 and frames.any()
        noop = np.tile(np.array([0, 0, 0, 0, 0, 0, -1.0]), (2, 8, 1))
        out = env.step_chunk(noop)
        # the solved env stops at its first policy step; its frame slot is black, the other's is not
        assert out.success.tolist() == [False, True] and out.done.tolist() == [False, True]
        assert out.executed.tolist() == [8, 1]
        assert out.frames[0].any() and not out.frames[1].any()
        assert env.check_success().tolist() == [False, True]
        out = env.step_chunk(noop)  # the done env executes nothing; the other reaches the limit
        assert out.executed.tolist() == [8, 0] and out.done.tolist() == [True, True]
        with pytest.raises(ValueError, match="expected 2 tasks"):
            env.reset(states[:1], [task, task])
        with pytest.raises(IndexError, match="env_ids"):
            env.step_chunk(noop, env_ids=[0, 5])
    finally:
        env.close()
