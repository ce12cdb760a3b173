"""`vlarl-fast eval --suite libero_*` end to end: a tiny OpenVLA-OFT checkpoint in the official
layout drives LIBERO episodes through the same suite, chunk env and evaluator as training."""

import json

import imageio

from vlarl_fast.cli import main
from vlarl_fast.envs.libero.registry import get_task
from vlarl_fast.recipes import load_config
from vlarl_fast.rl.policy_setup import suite_cameras

from conftest import tiny_checkpoint


def test_eval_cli_with_an_official_layout_checkpoint(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", suite="libero_goal", num_images=2)
    out_dir, video_dir = tmp_path / "out", tmp_path / "videos"
    code = main(["eval", "--suite", "libero_goal", "--checkpoint", str(ckpt), "--tasks", "0", "--episodes", "3",
                 "--videos", "2", "--video-dir", str(video_dir), "--out-dir", str(out_dir),
                 "env.max_chunks=1", "env.image_size=32", "env.settle_steps=2", "run.progress=false"])
    assert code == 0
    printed = capsys.readouterr().out
    task = get_task("libero_goal", 0)
    assert task.language in printed and "0/3" in printed
    saved = json.loads((out_dir / "libero_goal_results.json").read_text())
    row = saved["tasks"][0]
    assert saved["episodes"] == 3 and row["init_state_ids"] == [0, 1, 2]
    # a random policy does not solve the task: every episode runs to the limit (1 chunk of 8)
    assert row["episode_steps"] == [8, 8, 8] and row["successes"] == 0
    videos = sorted(video_dir.glob("*.mp4"))
    assert len(videos) == 2
    frames = imageio.mimread(str(videos[0]))
    assert len(frames) == 2  # the first frame and the one after the only chunk


def test_libero_recipe_defaults_and_cameras_from_the_checkpoint(tmp_path):
    cfg = load_config("libero_spatial", [f"policy.init={tmp_path}"])
    assert cfg.env.max_chunks * 8 == 512 and cfg.env.settle_steps == 10 and cfg.env.image_size == 256
    assert (cfg.grpo.group_size, cfg.grpo.groups_per_iteration, cfg.grpo.temperature) == (8, 64, 1.6)
    assert (cfg.grpo.clip_low, cfg.grpo.clip_high, cfg.grpo.lr) == (0.2, 0.28, 5e-6)
    assert (cfg.grpo.accuracy_lower, cfg.grpo.accuracy_upper) == (0.1, 0.9)
    assert cfg.eval.greedy and cfg.eval.episodes_per_task == 50
    from vlarl_fast.policy import OpenVLAOFTConfig

    one, two = OpenVLAOFTConfig.tiny(num_images=1), OpenVLAOFTConfig.tiny(num_images=2)
    assert suite_cameras("libero_spatial", [], one) == ["agentview"]
    assert suite_cameras("libero_spatial", [], two) == ["agentview", "robot0_eye_in_hand"]
