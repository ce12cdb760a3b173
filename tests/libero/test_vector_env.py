"""The gymnasium VectorEnv face of the LIBERO chunk env."""

import numpy as np

from vlarl_fast.envs.libero.registry import NOOP_ACTION, get_task
from vlarl_fast.envs.libero.vector_env import LiberoVectorEnv

SUITE = "libero_goal"


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
