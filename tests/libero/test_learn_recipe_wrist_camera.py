"""`--recipe libero_learn` with OpenVLA-OFT's LIBERO input, agentview plus the wrist camera
(`env.cameras=[agentview,robot0_eye_in_hand]`): the scripted demos record both views, the tiny
policy takes two images per observation, and SFT, a GRPO iteration, the checkpoint and the
evaluation run through them end to end."""

import json

import h5py

from vlarl_fast.cli import main
from vlarl_fast.recipes.config import load_config
from vlarl_fast.rl.checkpoint import load_policy


def test_libero_learn_with_the_wrist_camera(tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--recipe", "libero_learn", "env.tasks=[6]", "env.cameras=[agentview,robot0_eye_in_hand]",
                 "sft.steps=3", "grpo.iterations=1", "grpo.groups_per_iteration=1", "grpo.max_sample_rounds=1", "env.num_envs=8",
                 "env.max_chunks=2", "eval.episodes_per_task=1", "eval.videos=0", "run.time_budget_min=0",
                 "run.progress=false", f"run.out_dir={out}"])
    assert code in (0, None)
    (demo,) = (out / "demos").glob("*_demo.hdf5")
    with h5py.File(demo, "r") as f:
        obs = f["data/demo_0/obs"]
        steps = obs["agentview_rgb"].shape[0]
        assert obs["eye_in_hand_rgb"].shape == obs["agentview_rgb"].shape == (steps, 64, 64, 3)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (sft,) = [r for r in rows if r["kind"] == "sft"]
    assert sft["sft/samples"] == steps and sft["sft/demos"] == 1
    (train,) = [r for r in rows if r["kind"] == "train"]
    chunk_len = load_config("libero_learn", []).policy.chunk_len
    assert train["rollout/groups_sampled"] == 1 and train["perf/env_steps"] == 8 * 2 * chunk_len  # 8 envs x 2 chunks
    assert [r["episodes"] for r in rows if r["kind"] == "eval"] == [1, 1]
    policy = load_policy(out / "checkpoints" / "step_000001")
    assert policy.config.num_images == 2 and policy.config.use_proprio


def test_demos_cli_records_the_wrist_camera_on_request(tmp_path):
    assert main(["demos", "--suite", "libero_goal", "--tasks", "6", "--init-ids", "7", "--out", str(tmp_path),
                 "--image-size", "16", "--fast-render", "--threads", "1", "--wrist"]) in (0, None)
    (demo,) = tmp_path.glob("*_demo.hdf5")
    with h5py.File(demo, "r") as f:
        obs = f["data/demo_0/obs"]
        assert {k for k in obs if k.endswith("_rgb")} == {"agentview_rgb", "eye_in_hand_rgb"}
        assert obs["eye_in_hand_rgb"].shape == obs["agentview_rgb"].shape == (obs["ee_pos"].shape[0], 16, 16, 3)
