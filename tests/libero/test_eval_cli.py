"""`vlarl-fast eval` path end to end: a (tiny, randomly initialised) OpenVLA-OFT checkpoint in the
official layout, loaded by main_eval, driving LIBERO episodes on the engine."""

import argparse
import json

import torch

from vlarl_fast.envs.libero.evaluate import add_eval_arguments, main_eval
from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer, save_pretrained


def test_main_eval_with_a_checkpoint(tmp_path):
    tok = PromptTokenizer.tiny()
    cfg = OpenVLAOFTConfig.tiny(num_images=2, use_proprio=False, image_size=16)
    torch.manual_seed(0)
    stats = {"libero_spatial_no_noops": {"action": {
        "q01": [-0.5] * 6 + [0.0], "q99": [0.5] * 6 + [1.0], "mask": [True] * 6 + [False]}}}
    model = OpenVLAOFT(cfg, tokenizer=tok, norm_stats=stats)
    ckpt = save_pretrained(model, tmp_path / "ckpt", stats, tok)

    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    args = parser.parse_args([
        "--suite", "libero_spatial", "--policy", str(ckpt), "--tasks", "0",
        "--num-init-states", "2", "--num-envs", "2", "--episode-length", "16",
        "--settle-steps", "2", "--size", "32", "--device", "cpu",
        "--out-dir", str(tmp_path / "out")])
    res = main_eval(args)
    row = res["tasks"][0]
    assert row["episodes"] == 2 and row["init_state_ids"] == [0, 1]
    # A random policy does not solve the task: both episodes run to the limit (2 chunks of 8).
    assert row["episode_steps"] == [16, 16] and row["successes"] == 0
    saved = json.loads((tmp_path / "out" / "libero_spatial_results.json").read_text())
    assert saved["episodes"] == 2
