"""Mixing tasks: LiberoBatch routes global env ids to per-task engines, in any order."""

import numpy as np

from vlarl_fast.envs.libero.batch import LiberoBatch
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine


def test_batch_mixes_tasks_like_single_task_engines(get_scene, scene_dict):
    tasks = [get_task("libero_spatial", 0), get_task("libero_goal", 0)]
    batch = LiberoBatch(tasks, [1, 2], 1, cameras=None, settle_steps=2, scenes=scene_dict)
    acts = np.random.default_rng(7).uniform(-0.5, 0.5, size=(2, 3, 7))
    try:
        assert batch.num_envs == 3
        assert batch.instructions == [tasks[0].language, tasks[1].language, tasks[1].language]
        batch.reset([3, 0, 1])
        out = batch.step(acts, env_ids=[2, 0], render=False)  # not in id order, one env idle
        assert out.executed.tolist() == [3, 3]
        assert batch.episode_steps.tolist() == [3, 0, 3]
        got = [batch.engines[0].engine.qpos[0].copy(), batch.engines[1].engine.qpos[1].copy()]
        proprio = batch.proprio([0, 2])
    finally:
        batch.close()
    for k, (suite, init, a, j) in enumerate([("libero_spatial", 3, acts[1], 0),
                                             ("libero_goal", 1, acts[0], 1)]):
        single = LiberoTaskEngine(get_scene(suite), 1, 1, cameras=None, settle_steps=2)
        try:
            single.reset([init])
            single.step(a[None], render=False)
            assert np.array_equal(single.engine.qpos[0], got[k])
            np.testing.assert_array_equal(single.proprio()[0], proprio[k])
        finally:
            single.close()
