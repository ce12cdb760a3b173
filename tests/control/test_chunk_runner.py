"""Whole-chunk execution: determinism, env subsets, group resets, early stop on native success
predicates (checked against robosuite's own success and contact checks), argument errors."""

import numpy as np
import pytest

from vlarl_fast import Engine
from vlarl_fast.engine.predicates import InContact, InRegion, JointAbove, JointBelow

from . import robosuite_ref as R


@pytest.fixture(scope="module")
def lift():
    env = R.make_env("Lift")
    rng = np.random.default_rng(7)
    states = R.diverse_states(env, rng, 3)
    grasp = R.reach_grasp_actions(env, "Lift", states[0], rng, 50)
    return env, states, grasp


def _run_all(engine, states, actions):
    engine.set_state(states)
    res = engine.step_chunk(actions)
    out = {k: np.array(getattr(res, k)) for k in ("eef_pos", "eef_quat", "gripper_qpos",
                                                   "joint_pos", "done", "steps_executed")}
    out["qpos"], out["qvel"] = engine.qpos.copy(), engine.qvel.copy()
    return out


def test_identical_across_thread_counts_and_runs(lift):
    env, states, _ = lift
    rng = np.random.default_rng(0)
    n = 6
    starts = states[np.arange(n) % len(states)]
    actions = rng.uniform(-1, 1, size=(n, 12, 7))
    results = []
    for threads in (1, 2, 3):
        with Engine.from_robosuite(env, n, threads) as engine:
            results += [_run_all(engine, starts, actions), _run_all(engine, starts, actions)]
    for other in results[1:]:
        for key, value in results[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=key)
    assert not np.allclose(results[0]["qpos"][0], results[0]["qpos"][1])


def test_env_subset_steps_only_those_envs(lift):
    env, states, _ = lift
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(4, 5, 7))
    with Engine.from_robosuite(env, 4, 2) as engine:
        full = _run_all(engine, states[[0, 1, 2, 0]], actions)
        engine.set_state(states[[0, 1, 2, 0]])
        before = engine.qpos.copy()
        res = engine.step_chunk(actions[[3, 1]], env_ids=[3, 1])
        np.testing.assert_array_equal(engine.qpos[[0, 2]], before[[0, 2]])
        np.testing.assert_array_equal(engine.qpos[[3, 1]], full["qpos"][[3, 1]])
        np.testing.assert_array_equal(res.eef_pos, full["eef_pos"][[3, 1]])
        assert res.done.shape == (2, 5) and res.steps_executed.tolist() == [5, 5]


def test_group_reset_starts_identically(lift):
    env, states, _ = lift
    rng = np.random.default_rng(2)
    with Engine.from_robosuite(env, 6, 2) as engine:
        engine.step_chunk(rng.uniform(-1, 1, size=(6, 3, 7)))  # move everything first
        engine.set_state(states[1], env_ids=[0, 1, 2])
        engine.set_state(states[2], env_ids=[3, 4, 5])
        for group, state in (([0, 1, 2], states[1]), ([3, 4, 5], states[2])):
            np.testing.assert_array_equal(engine.qpos[group], np.tile(state[1:1 + engine.nq],
                                                                      (3, 1)))
            np.testing.assert_array_equal(engine.qvel[group], np.tile(state[1 + engine.nq:],
                                                                      (3, 1)))
            for i in group:
                pos, _, grip = engine.controller_goal(i)
                np.testing.assert_array_equal(grip, [0.0, 0.0])
                np.testing.assert_array_equal(pos, engine.field("site_xpos")[i, engine.spec
                                              .controller["eef_site"]])
        same = np.repeat(rng.uniform(-1, 1, size=(1, 8, 7)), 6, axis=0)
        res = engine.step_chunk(same)
        for group in ([0, 1, 2], [3, 4, 5]):
            assert (engine.qpos[group] == engine.qpos[group[0]]).all()
            assert (res.eef_pos[group] == res.eef_pos[group[0]]).all()


def test_flattened_state_starts_an_episode(lift):
    env, states, _ = lift
    with Engine.from_robosuite(env, 2, 1) as engine:
        engine.set_state(states[:2])
        np.testing.assert_array_equal(engine.time, states[:2, 0])
        R.start(env, states[1])
        sid = engine.spec.controller["eef_site"]
        np.testing.assert_array_equal(engine.field("site_xpos")[1, sid], env.sim.data.site_xpos[sid])
        np.testing.assert_array_equal(engine.field("qacc_warmstart")[1], 0.0)
        np.testing.assert_array_equal(engine.initial_joint(0),
                                      env.robots[0].controller.initial_joint)


def test_initial_joint_drives_nullspace_like_robosuite(lift):
    env, states, _ = lift
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, size=(8, 7))
    controller = env.robots[0].controller
    saved = np.array(controller.initial_joint)
    target = saved + rng.normal(scale=0.3, size=saved.shape)
    try:
        controller.initial_joint = target.copy()
        ref = R.rollout(env, states[0], actions)
    finally:
        controller.initial_joint = saved
    with Engine.from_robosuite(env, 2, 1) as engine:
        engine.set_initial_joint(target, env_ids=[1])
        engine.set_state(states[0])
        engine.step_chunk(np.stack([actions, actions]))
        np.testing.assert_allclose(engine.qpos[1], ref["qpos"][-1], rtol=0, atol=1e-10)
        assert np.abs(engine.qpos[0] - ref["qpos"][-1]).max() > 1e-4  # the target matters


def test_joint_predicate_stops_env_mid_chunk(lift):
    env, states, grasp = lift
    closing = grasp[None, 25:40].repeat(2, axis=0)  # the gripper closes in this window
    with Engine.from_robosuite(env, 2, 2) as engine:
        engine.set_state(states[0])
        engine.step_chunk(grasp[None, :25].repeat(2, axis=0))  # reach, gripper open
        start = engine.get_state()
        engine.set_success(JointBelow("gripper0_finger_joint1", 0.03), env_ids=[0])
        res = engine.step_chunk(closing)
        free = res.gripper_qpos[1, :, 0]
        stop = int(np.argmax(free < 0.03))
        assert 0 < stop < closing.shape[1] - 1 and free[stop] < 0.03 <= free[stop - 1]
        assert res.steps_executed.tolist() == [stop + 1, closing.shape[1]]
        assert res.done[0].tolist() == [False] * stop + [True] * (closing.shape[1] - stop)
        assert not res.done[1].any() and res.success.tolist() == [True, False]
        np.testing.assert_array_equal(res.gripper_qpos[0, :stop + 1], res.gripper_qpos[1, :stop + 1])
        np.testing.assert_array_equal(res.gripper_qpos[0, stop:],
                                      np.repeat(res.gripper_qpos[0, stop:stop + 1],
                                                closing.shape[1] - stop, axis=0))
        frozen = engine.qpos[0].copy()
        again = engine.step_chunk(closing)  # a succeeded env executes nothing
        assert again.steps_executed[0] == 0 and again.done[0].all() and again.success[0]
        np.testing.assert_array_equal(engine.qpos[0], frozen)
        engine.set_state(start[:1], env_ids=[0], spec=engine.state_spec)  # a new episode
        assert engine.step_chunk(closing[:, :1]).steps_executed[0] == 1


def _first(flags) -> int:
    flags = np.asarray(flags)
    assert flags.any()
    return int(np.argmax(flags))


def test_region_predicate_matches_robosuite_success(lift):
    """Lift's _check_success (cube above the table by 4 cm) as a native predicate stops the
    engine at the same control step where robosuite's check first holds after env.step."""
    env, states, grasp = lift
    R.start(env, states[0])
    ref = []
    for a in grasp:
        env.step(a)
        ref.append(env._check_success())
    table = env.model.mujoco_arena.table_offset[2]
    with Engine.from_robosuite(env, 1, 1) as engine:
        engine.set_success([InRegion("cube_main", [-1e9, -1e9, table + 0.04], [1e9, 1e9, 1e9])])
        engine.set_state(states[0])
        res = engine.step_chunk(grasp[None])
    assert res.success[0] and res.steps_executed[0] == _first(ref) + 1


def test_contact_predicate_matches_robosuite_check_contact(lift):
    env, states, grasp = lift
    R.start(env, states[0])
    robot = env.robots[0]
    ref = []
    for a in grasp:
        env.step(a)
        ref.append(env.check_contact(robot.gripper, env.cube))
    with Engine.from_robosuite(env, 2, 2) as engine:
        engine.set_success(InContact(robot.gripper.root_body, "cube_main"), env_ids=[0])
        engine.set_success(InContact(robot.gripper.contact_geoms, env.cube.contact_geoms,
                                     by="geom"), env_ids=[1])
        engine.set_state(states[0])
        res = engine.step_chunk(np.stack([grasp, grasp]))
    assert res.steps_executed.tolist() == [_first(ref) + 1] * 2


def test_region_in_a_frame_and_conjunction(lift):
    env, states, _ = lift
    step = np.zeros((1, 1, 7))
    with Engine.from_robosuite(env, 1, 1) as engine:
        engine.set_state(states[0])
        engine.step_chunk(step)
        m = engine.spec.model
        cube, base = m.body("cube_main").id, m.body("robot0_base").id
        p, o = engine.field("xpos")[0, cube], engine.field("xpos")[0, base]
        local = engine.field("xmat")[0, base].reshape(3, 3).T @ (p - o)
        box = InRegion("cube_main", local - 1e-9, local + 1e-9, frame="robot0_base")
        engine.set_state(states[0])
        engine.set_success([box, JointAbove("gripper0_finger_joint1", -1.0)])
        assert engine.num_success_predicates(0) == 2
        assert engine.step_chunk(np.zeros((1, 3, 7))).steps_executed[0] == 1
        engine.set_state(states[0])
        engine.set_success([box, JointBelow("gripper0_finger_joint1", -1.0)])  # never both
        res = engine.step_chunk(np.zeros((1, 3, 7)))
        assert res.steps_executed[0] == 3 and not res.done.any()
        engine.set_success([])
        assert engine.num_success_predicates(0) == 0


def test_single_step_actions_and_errors(lift):
    env, states, _ = lift
    with Engine.from_robosuite(env, 2, 1) as engine:
        res = engine.step_chunk(np.zeros((2, 7)))
        assert res.eef_pos.shape == (2, 1, 3) and res.eef_quat.shape == (2, 1, 4)
        assert res.done.dtype == bool and res.steps_executed.tolist() == [1, 1]
        np.testing.assert_allclose(np.linalg.norm(res.eef_quat, axis=-1), 1.0)
        with pytest.raises(ValueError, match=r"actions must have shape \(2, K, 7\)"):
            engine.step_chunk(np.zeros((2, 3, 6)))
        with pytest.raises(ValueError, match="NaN"):
            engine.step_chunk(np.full((2, 7), np.nan))
        with pytest.raises(ValueError, match="render must be one of"):
            engine.step_chunk(np.zeros((2, 7)), render="sometimes")
        with pytest.raises(ValueError, match="needs an engine built with cameras"):
            engine.step_chunk(np.zeros((2, 7)), render="end")
        with pytest.raises(ValueError, match=r"q must have shape \(7,\)"):
            engine.set_initial_joint(np.zeros(6))
        with pytest.raises(ValueError, match="no joint named 'nope'"):
            engine.set_success(JointAbove("nope", 0.0))
        with pytest.raises(ValueError, match="low must be <= high"):
            engine.set_success(InRegion("cube_main", [1, 1, 1], [0, 0, 0]))
    with pytest.raises(TypeError, match="expected a robosuite environment"):
        Engine.from_robosuite(object(), 1)
    plain = Engine(env.sim.model._model, 1, 1)
    with pytest.raises(RuntimeError, match="no controller"):
        plain.step_chunk(np.zeros((1, 7)))
    plain.close()


def test_controller_goal_override_matches_robosuite(lift):
    """A goal orientation set from outside persists while actions do not rotate (robosuite's
    set_goal keeps goal_ori when the rotation delta is exactly zero); the gripper command
    continues from the given value."""
    env, states, _ = lift
    rng = np.random.default_rng(4)
    actions = rng.uniform(-1, 1, size=(8, 7))
    actions[:, 3:6] = 0.0
    R.start(env, states[0])
    robot = env.robots[0]
    tilt = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    goal_ori = tilt @ robot.controller.goal_ori
    grip = np.array([0.4, -0.4])
    robot.controller.goal_ori = goal_ori.copy()
    robot.gripper.current_action = grip.copy()
    for a in actions:
        env.step(a)
    ref_qpos = env.sim.data.qpos.copy()
    with Engine.from_robosuite(env, 2, 1) as engine:
        engine.set_state(states[0])
        engine.set_controller_goal(np.zeros(3), goal_ori, grip, env_ids=[1])
        _, ori, g = engine.controller_goal(1)
        np.testing.assert_array_equal(ori, goal_ori)
        np.testing.assert_array_equal(g, grip)
        engine.step_chunk(np.stack([actions, actions]))
        np.testing.assert_allclose(engine.qpos[1], ref_qpos, rtol=0, atol=1e-10)
        assert np.abs(engine.qpos[0] - ref_qpos).max() > 1e-3
        np.testing.assert_array_equal(engine.controller_goal(1)[1], goal_ori)
        with pytest.raises(ValueError, match="goal_ori must be finite with shape"):
            engine.set_controller_goal(np.zeros(3), np.eye(2), grip)


def test_unstable_env_stops_alone(lift):
    from vlarl_fast.engine import EnvStatus

    env, states, _ = lift
    actions = np.random.default_rng(6).uniform(-1, 1, size=(2, 4, 7))
    with Engine.from_robosuite(env, 2, 2) as engine:
        engine.set_state(states[0])
        reference = engine.step_chunk(actions).eef_pos.copy()
        engine.set_state(states[0])
        engine.qvel[0, 0] = 1e12  # MuJoCo flags the velocity as bad at the next step
        res = engine.step_chunk(actions)
        assert engine.status.tolist() == [EnvStatus.UNSTABLE, EnvStatus.OK]
        assert res.done[0].all() and not res.done[1].any() and not res.success.any()
        assert res.steps_executed.tolist() == [1, 4]
        np.testing.assert_array_equal(res.eef_pos[1], reference[1])
        assert engine.last_chunk is res
        assert engine.step_chunk(actions).steps_executed.tolist() == [0, 4]
        engine.set_state(states[0])  # a new episode clears the status
        assert engine.status.tolist() == [EnvStatus.OK, EnvStatus.OK]
