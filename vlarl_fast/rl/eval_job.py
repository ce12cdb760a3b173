"""`vlarl-fast eval`: a policy checkpoint on the fixed evaluation set of any suite (built-in or
LIBERO), through the same suite, chunk env and evaluator as training; per-task table (printed,
JSON and Markdown) and optional mp4 videos."""

from __future__ import annotations

from pathlib import Path

import torch

from vlarl_fast.envs.suites import make_suite, make_suite_env
from vlarl_fast.recipes.config import TrainConfig
from vlarl_fast.rl.evaluate import evaluate, evaluation_set, results_table, write_results
from vlarl_fast.rl.policy_setup import build_policy, suite_cameras, tiny_shape


def run_eval(cfg: TrainConfig, policy_dir: Path | None, *, episodes_per_task: int | None = None,
             videos: int = 0, video_dir: str | None = None, out_dir: str | None = None) -> dict:
    """Returns the evaluator's result plus "table" (results_table) and "result_files"."""
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    writer = None
    if videos:
        from vlarl_fast.rl.video import VideoWriter

        writer = VideoWriter()  # before the engine and the policy (see VideoWriter)
    suite = make_suite(cfg.env.suite, cfg.env.tasks)
    env = None
    try:
        policy = build_policy(cfg.policy.image_size, cfg.run.seed, str(policy_dir) if policy_dir else None,
                              **tiny_shape(cfg))
        unnorm_key = suite.unnorm_key(policy.norm_stats)
        env = make_suite_env(suite, cfg.env.num_envs, max_steps=cfg.env.max_chunks * policy.config.chunk_len,
                             image_size=cfg.env.image_size, num_threads=cfg.env.num_threads, backend=cfg.env.backend,
                             fast_render=cfg.env.fast_render,
                             cameras=suite_cameras(cfg.env.suite, cfg.env.cameras, policy.config),
                             settle_steps=cfg.env.settle_steps)
        eval_set = evaluation_set(suite, cfg.eval.episodes_per_task if episodes_per_task is None else episodes_per_task,
                                  cfg.eval.seed_offset, cfg.eval.repeats)
        result = evaluate(policy, env, eval_set, max_chunks=cfg.env.max_chunks, temperature=cfg.grpo.temperature,
                          greedy=cfg.eval.greedy, seed=cfg.run.seed, videos=videos, unnorm_key=unnorm_key,
                          pipeline=cfg.env.pipeline)
    finally:
        if env is not None:
            env.close()
        suite.close()
    table = results_table(cfg.env.suite, eval_set, result)
    result["table"] = table
    result["result_files"] = [str(p) for p in write_results(table, out_dir or Path(cfg.run.out_dir) / "eval")]
    if writer is not None:
        out = Path(video_dir) if video_dir else Path(cfg.run.out_dir) / "eval_videos"
        result["video_paths"] = writer.write(out, result["videos"]) if result["videos"] else []
        writer.close()
    return result
