"""Evaluation runner (tables, videos, episode limits) and the gymnasium VectorEnv face."""

import json

import numpy as np

from vlarl_fast.envs.libero.evaluate import evaluate_suite
from vlarl_fast.envs.libero.registry import NOOP_ACTION, get_task
from vlarl_fast.envs.libero.vector_env import LiberoVectorEnv

SUITE = "libero_goal"


def test_evaluate_suite_limits_tables_and_videos(tmp_path, scene_dict):
    seen = []

    def policy_fn(images, instructions):
        seen.append((images.shape, list(instructions)))
        return np.tile(NOOP_ACTION, (images.shape[0], 2, 1))  # chunks of 2 steps

    res = evaluate_suite(SUITE, policy_fn, num_init_states=3, num_envs=2, episode_length=3,
                         settle_steps=2, task_ids=[0], height=32, width=32,
                         video_dir=tmp_path / "videos", out_dir=tmp_path, scenes=scene_dict,
                         log=None)
    task = get_task(SUITE, 0)
    # 3 init states in waves of 2 and 1; each episode needs 2 calls (2 steps + 1 of 2).
    assert [s for s, _ in seen] == [(2, 2, 32, 32, 3)] * 2 + [(1, 2, 32, 32, 3)] * 2
    assert all(instr == [task.language] * len(instr) for _, instr in seen)
    row = res["tasks"][0]
    assert row["episodes"] == 3 and row["successes"] == 0 and row["episode_steps"] == [3, 3, 3]
    assert res["success_rate"] == 0.0 and res["episode_length"] == 3
    saved = json.loads((tmp_path / f"{SUITE}_results.json").read_text())
    assert saved["tasks"][0]["init_state_ids"] == [0, 1, 2]
    md = (tmp_path / f"{SUITE}_results.md").read_text()
    assert task.language in md and "0/3" in md
    videos = sorted((tmp_path / "videos" / SUITE).glob("*.mp4"))
    assert [v.name for v in videos] == [f"task00_init0{i}_failure.mp4" for i in range(3)]
    import imageio

    frames = imageio.mimread(str(videos[0]))
    assert len(frames) == 3 and frames[0].shape == (32, 32, 3)  # reset + one per chunk


def test_vector_env_face(get_reference, scene_dict):
    env = LiberoVectorEnv(SUITE, task_ids=[0], envs_per_task=2, chunk=2, height=32, width=32,
                          settle_steps=2, max_steps=3, scenes=scene_dict)
    try:
        obs, info = env.reset(options={"init_state_ids": [4, 7]})
        assert env.observation_space.contains(obs)
        assert obs["agentview_image"].shape == (2, 32, 32, 3)
        assert info["init_state_id"].tolist() == [4, 7]
        assert info["task"] == [get_task(SUITE, 0).language] * 2
        # The state is LIBERO's (eef pos, axis-angle, gripper qpos) at the same episode point.
        ref = get_reference(SUITE)
        ref.seed(0)
        ref.reset()
        ref.set_init_state(get_task(SUITE, 0).init_states()[4])
        for _ in range(2):
            ref.step(NOOP_ACTION)
        import robosuite.utils.transform_utils as T

        robot, data = ref.env.robots[0], ref.env.sim.data
        quat = T.convert_quat(data.body_xquat[ref.env.sim.model.body_name2id(
            robot.robot_model.eef_name)], to="xyzw")
        want = np.concatenate([data.site_xpos[robot.eef_site_id], T.quat2axisangle(quat),
                               data.qpos[robot._ref_gripper_joint_pos_indexes]])
        np.testing.assert_allclose(obs["state"][0], want, atol=1e-9)

        acts = np.tile(NOOP_ACTION, (2, 2, 1))
        obs, rew, term, trunc, info = env.step(acts)
        assert info["steps_executed"].tolist() == [2, 2] and not trunc.any()
        assert env.action_space.contains(acts)
        obs, rew, term, trunc, info = env.step(acts)  # max_steps=3: one more step, truncated
        assert info["steps_executed"].tolist() == [1, 1]
        assert trunc.all() and not term.any() and (rew == 0).all()
        obs, rew, term, trunc, info = env.step(acts)  # finished envs execute nothing
        assert info["steps_executed"].tolist() == [0, 0] and trunc.all()
        obs, info = env.reset(options={"reset_mask": np.array([True, False])})
        obs, rew, term, trunc, info = env.step(acts)
        assert info["steps_executed"].tolist() == [2, 0]
        assert env.render().shape == (2, 32, 32, 3)
    finally:
        env.close()
