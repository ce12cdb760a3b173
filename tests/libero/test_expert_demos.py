"""The scripted LIBERO expert and its demo files: the expert completes its task from several init
states (success decided by LIBERO's own `_check_success`) for each goal kind it handles (pick and
place, opening a drawer, turning a knob, goals of several predicates in sequence), plans a goal's
parts in a workable order, a demo file has LIBERO's dataset layout (read back with h5py), and
replaying a file's actions from its init state on a fresh engine reaches LIBERO's goal at the
file's last step."""

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

# (suite, task index): an On(object, object) goal and an On(object, region) goal of two suites
CASES = [("libero_goal", 6), ("libero_object", 1)]


@pytest.mark.parametrize("suite,index", CASES)
def test_expert_succeeds_from_init_states(get_scene, suite, index):
    from vlarl_fast.envs.libero.expert_runs import run_expert

    scene = get_scene(suite, index)
    ids = [17, 41]
    result = run_expert(scene, ids, num_threads=2)
    assert result["success"].all(), (scene.task.name, result["success"], result["steps"])
    assert (result["steps"] < scene.task.max_steps).all()
    # LIBERO's own check agrees on the final state of each episode
    from vlarl_fast.envs.libero.success import LiberoSuccess

    assert LiberoSuccess(scene).goal() == scene.goal()


# (suite, task index, init states): Open(drawer) (in both the bowl lies in the drawer's way and is
# moved first), TurnOn(stove knob), two In(object, basket) in sequence
GOAL_KINDS = [("libero_goal", 0, [3, 17]), ("libero_goal", 7, [0, 41]), ("libero_10", 0, [0, 29])]


@pytest.mark.parametrize("suite,index,ids", GOAL_KINDS)
def test_expert_goal_kinds(get_scene, suite, index, ids):
    from vlarl_fast.envs.libero.expert_runs import run_expert

    scene = get_scene(suite, index)
    result = run_expert(scene, ids, num_threads=1)
    assert result["success"].all(), (scene.task.name, result["success"], result["steps"])
    assert (result["steps"] < scene.task.max_steps).all()


def test_expert_plans_drawer_goals(get_scene):
    from vlarl_fast.envs.libero.expert import plan_goal

    # BDDL: (And (Close bottom_region) (In bowl bottom_region)): place first, then close; the drawer
    # is opened first (skipped at run time when it starts open), after clearing its way
    scene = get_scene("libero_10", 3)
    region = "white_cabinet_1_bottom_region"
    assert scene.goal() == [("close", region), ("in", "akita_black_bowl_1", region)]
    plan = plan_goal(scene)
    assert plan[-3:] == [("open", region), ("in", "akita_black_bowl_1", region), ("close", region)]
    loose = set(scene.robosuite_env.objects_dict)
    assert {step[1] for step in plan[:-3]} == loose and all(step[0] == "clear" for step in plan[:-3])
    assert [step[3] for step in plan[:-3] if step[1] == "akita_black_bowl_1"] == [True]  # picked later
    # the single In(bowl, top region) of "open the top drawer and put the bowl inside" opens it first
    assert [step[0] for step in plan_goal(get_scene("libero_goal", 3))][-2:] == ["open", "in"]


def test_unsupported_goal_is_a_clear_error(get_scene):
    from vlarl_fast.envs.libero.expert import LiberoExpert, UnsupportedGoal

    with pytest.raises(UnsupportedGoal, match="microwave.*door on a hinge"):
        LiberoExpert(get_scene("libero_10", 9))  # Close(microwave): a hinged door


def test_demo_file_layout_and_replay(get_scene, tmp_path):
    from vlarl_fast.envs.libero.demos import record_demo_files, sft_samples
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    scene = get_scene("libero_goal", 6)
    task = scene.task
    scenes = {(task.suite, task.index): scene}
    (path,) = record_demo_files([task], scenes, init_ids=[5], out_dir=tmp_path, image_size=32, num_threads=2)
    assert path.name == f"{task.name}_demo.hdf5"
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert json.loads(data.attrs["problem_info"])["language_instruction"] == task.language
        assert data.attrs["bddl_file_name"] == task.bddl_file
        assert "(:goal" in data.attrs["bddl_file_content"]
        assert json.loads(data.attrs["env_args"])["bddl_file"] == task.bddl_file
        assert int(data.attrs["num_demos"]) == 1
        demo = data["demo_0"]
        t = int(demo.attrs["num_samples"])
        assert int(data.attrs["total"]) == t
        nq, nv = scene.model.nq, scene.model.nv
        assert demo["actions"].shape == (t, 7)
        assert demo["states"].shape == (t, 1 + nq + nv)
        assert demo["robot_states"].shape == (t, 9)
        assert demo["rewards"][-1] == 1 and demo["dones"][-1] == 1 and demo["dones"][()].sum() == 1
        assert demo["obs/agentview_rgb"].shape == (t, 32, 32, 3) and demo["obs/agentview_rgb"].dtype == np.uint8
        for key, width in (("ee_pos", 3), ("ee_ori", 3), ("ee_states", 6), ("gripper_states", 2),
                           ("joint_states", 7)):
            assert demo[f"obs/{key}"].shape == (t, width), key
        np.testing.assert_array_equal(demo.attrs["init_state"], task.init_states()[5])
        actions = demo["actions"][()]
        states = demo["states"][()]
        ee_pos = demo["obs/ee_pos"][()]
    assert np.abs(actions[:, 3:6]).max() == 0.0 and set(np.unique(actions[:, 6])) <= {-1.0, 1.0}
    # the recorded state before each action is the engine's: qpos of the eef moves as ee_pos says
    assert np.linalg.norm(ee_pos[-1] - ee_pos[0]) > 0.05 and np.isfinite(states).all()
    # replay on a fresh engine: LIBERO's goal holds exactly at the last recorded step
    te = LiberoTaskEngine(scene, 1, 1, cameras=None)
    try:
        te.reset(init_state_ids=[5], render=False)
        seen = []
        for k, a in enumerate(actions):
            assert not te.success[0], f"goal reached early, at step {k}"
            seen.append(te.proprio([0])[0])
            te.step(a[None, None, :], render=False)
        assert te.success[0]
    finally:
        te.close()
    # SFT samples: one per step, chunk targets from it on, the last action repeated
    frames, instructions, chunks, proprio = sft_samples([path], chunk_len=8, frame_shape=(1, 32, 32, 3),
                                                        image_convention="openvla")
    assert frames.shape == (t, 1, 32, 32, 3) and chunks.shape == (t, 8, 7) and instructions == [task.language] * t
    # each sample's robot state is what the rollout env's proprio() says before that step
    assert proprio.shape == (t, 8) and proprio.dtype == np.float32
    np.testing.assert_allclose(proprio, np.array(seen), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(chunks[0], actions[:8])
    np.testing.assert_array_equal(chunks[-1], np.repeat(actions[-1:], 8, axis=0))
    with pytest.raises(ValueError, match="image convention"):
        sft_samples([path], chunk_len=8, frame_shape=(1, 32, 32, 3), image_convention="mujoco")
    with pytest.raises(ValueError, match="frames of shape"):
        sft_samples([path], chunk_len=8, frame_shape=(1, 64, 64, 3), image_convention="openvla")


def test_demo_file_with_the_wrist_camera(get_scene, tmp_path):
    """OpenVLA-OFT's LIBERO input is agentview plus the wrist camera: demos then hold LIBERO's
    obs/eye_in_hand_rgb too, each frame the one a rollout engine renders before that action, and
    SFT samples stack the cameras in the env's order."""
    import shutil

    from vlarl_fast.envs.libero.demos import record_demo_files, sft_samples
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    scene = get_scene("libero_goal", 6)
    task = scene.task
    scenes = {(task.suite, task.index): scene}
    both = ["agentview", "robot0_eye_in_hand"]
    (path,) = record_demo_files([task], scenes, init_ids=[7], out_dir=tmp_path, image_size=32, fast_render=True,
                                num_threads=1, cameras=both[::-1])  # agentview is recorded first whatever the order
    with h5py.File(path, "r") as f:
        demo = f["data/demo_0"]
        agent, wrist, actions = demo["obs/agentview_rgb"][()], demo["obs/eye_in_hand_rgb"][()], demo["actions"][()]
    t = len(actions)
    assert agent.shape == wrist.shape == (t, 32, 32, 3) and wrist.dtype == np.uint8
    assert np.abs(agent.astype(int) - wrist.astype(int)).mean() > 10  # two different views
    te = LiberoTaskEngine(scene, 1, 1, cameras=both, height=32, width=32, image_convention="openvla", fast=True)
    try:
        frames = te.reset(init_state_ids=[7])
        for k, a in enumerate(actions):
            np.testing.assert_array_equal(frames[0, 0], agent[k], err_msg=f"agentview, step {k}")
            np.testing.assert_array_equal(frames[0, 1], wrist[k], err_msg=f"wrist, step {k}")
            frames = te.step(a[None, None, :]).frames
    finally:
        te.close()
    stacked, _, _, _ = sft_samples([path], chunk_len=8, frame_shape=(2, 32, 32, 3), image_convention="openvla",
                                   cameras=both[::-1])
    assert stacked.shape == (t, 2, 32, 32, 3)
    np.testing.assert_array_equal(stacked[:, 0], wrist)
    np.testing.assert_array_equal(stacked[:, 1], agent)
    plain = tmp_path / "plain.hdf5"  # the same file without the wrist camera, as agentview-only demos are
    shutil.copy(path, plain)
    with h5py.File(plain, "a") as f:
        del f["data/demo_0/obs/eye_in_hand_rgb"]
    only_agent, _, _, _ = sft_samples([plain], chunk_len=8, frame_shape=(1, 32, 32, 3), image_convention="openvla")
    np.testing.assert_array_equal(only_agent[:, 0], agent)
    with pytest.raises(ValueError, match="no wrist camera frames"):
        sft_samples([plain], chunk_len=8, frame_shape=(2, 32, 32, 3), image_convention="openvla", cameras=both)
    with pytest.raises(ValueError, match="one per frame"):
        sft_samples([path], chunk_len=8, frame_shape=(1, 32, 32, 3), image_convention="openvla", cameras=both)
