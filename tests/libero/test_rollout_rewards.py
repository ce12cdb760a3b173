"""The one rollout loop on LIBERO: a policy loaded from an official-layout checkpoint drives the
LIBERO chunk env; every reward equals LIBERO's own success check on the episode's final state."""

import numpy as np
import torch

from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.envs.libero.suite import LiberoSuite
from vlarl_fast.policy import load_pretrained
from vlarl_fast.rl.rollout import rollout

from conftest import solved_state, tiny_checkpoint


def test_rewards_equal_liberos_check_on_the_final_state(tmp_path, get_scene, scene_dict):
    policy = load_pretrained(tiny_checkpoint(tmp_path / "ckpt"), dtype=torch.float32, device="cpu")
    suite = LiberoSuite("libero_spatial", ["0", "1"])
    key = suite.unnorm_key(policy.norm_stats)
    assert key == "libero_spatial_no_noops"
    tasks, states, solved = [], [], []
    for t in suite.tasks:
        scene = get_scene(t.suite, t.index)
        for init in (0, 1):
            for is_solved in (False, True):
                base = t.init_states()[init]
                tasks.append(t)
                states.append(solved_state(scene, base) if is_solved else base)
                solved.append(is_solved)
    env = LiberoChunkEnv(len(tasks), 1, cameras=["agentview"], height=32, width=32, max_steps=16,
                         scenes=scene_dict)
    try:
        batch, times = rollout(policy, env, tasks, np.stack(states), task_ids=np.zeros(len(tasks)),
                               group_ids=np.arange(len(tasks)), max_chunks=2, temperature=1.6,
                               generator=torch.Generator().manual_seed(0), unnorm_key=key)
        final_check = env.check_success()
    finally:
        env.close()
    assert batch.success.tolist() == solved  # a random tiny policy solves nothing by itself
    assert final_check.tolist() == batch.success.tolist()
    # solved episodes end at their first step; the others run the 16-step limit (2 chunks of 8)
    assert batch.executed.sum(axis=1).tolist() == [1 if s else 16 for s in solved]
    size = policy.config.image_size  # the trajectories keep the model input, not the 32 px frames
    assert batch.images.shape[2:] == (1, size, size, 3) and batch.images.dtype == np.uint8
    assert times.env_steps == 4 * 1 + 4 * 16


def test_suite_prompts_and_validation_split():
    suite = LiberoSuite("libero_spatial", ["0", "pick_up_the_black_bowl_next_to_the_ramekin_and_place_it_on_the_plate"])
    assert [t.index for t in suite.tasks] == [0, 1]
    rng = np.random.default_rng(0)
    task_idx, init_ids = suite.sample_groups(rng, 4, [3, 7])
    # 2 tasks x 2 init states = 4 prompts, drawn without replacement: each exactly once
    assert sorted(zip(task_idx.tolist(), init_ids.tolist())) == [(0, 3), (0, 7), (1, 3), (1, 7)]
    # SimpleVLA-RL's default: all 50 init states train and validate
    assert suite.eval_init_ids(50, 0).tolist() == list(range(50))
    for bad in (lambda: suite.eval_init_ids(10, 45), lambda: suite.sample_groups(rng, 2, [50])):
        try:
            bad()
        except ValueError as e:
            assert "init state ids lie in 0..49" in str(e)
        else:
            raise AssertionError("out-of-range init ids were accepted")
