"""Evaluating a policy on a LIBERO suite with the native engine: every task, its init states
(all 50 or the first `num_init_states`), parallel envs, the suite's episode length and settle
steps; a per-task and per-suite success table (JSON + Markdown) and optional mp4 videos.

    results = evaluate_suite("libero_spatial", policy_fn, num_init_states=10, num_envs=8)

`policy_fn(images, instructions) -> actions`: images `[B, num_cameras, H, W, 3]` uint8 (OpenVLA-OFT
orientation), instructions `list[str]`, actions `[B, K, 7]` (a chunk per env; K may vary per call).
With `use_proprio=True` it is called as `policy_fn(images, instructions, proprio=[B, 8])`.

CLI wiring: `vlarl-fast eval --suite S --policy CKPT` calls `main_eval(args)` with the options
`add_eval_arguments(parser)` defines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vlarl_fast.envs.libero.batch import LiberoBatch
from vlarl_fast.envs.libero.rollout import run_episodes
from vlarl_fast.envs.libero.registry import MAX_EPISODE_STEPS, SETTLE_STEPS, suite_tasks
from vlarl_fast.envs.libero.scene import CAMERAS


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(str(path), np.stack(frames), fps=fps, macro_block_size=1)


def evaluate_suite(suite: str, policy_fn: Callable, num_init_states: int | None = None,
                   num_envs: int = 8, num_threads: int | None = None,
                   episode_length: int | None = None, settle_steps: int = SETTLE_STEPS,
                   video_dir: str | os.PathLike | None = None, *,
                   task_ids: Sequence[int] | None = None, cameras=CAMERAS, height: int = 256,
                   width: int = 256, image_convention: str = "openvla",
                   use_proprio: bool = False, out_dir: str | os.PathLike | None = None,
                   scenes: dict | None = None,
                   log: Callable[[str], None] | None = print) -> dict:
    """Runs the suite and returns the results dict (written to out_dir as
    <suite>_results.json / .md when given). Episodes stop at LIBERO's success or after
    `episode_length` policy steps (default: the suite's, MAX_EPISODE_STEPS). `scenes`: a dict
    that keeps the built LIBERO scenes across calls (training evaluates the same tasks often)."""
    scenes = {} if scenes is None else scenes
    tasks = suite_tasks(suite)
    if task_ids is not None:
        tasks = [tasks[i] for i in task_ids]
    max_steps = MAX_EPISODE_STEPS[suite] if episode_length is None else int(episode_length)
    t0 = time.perf_counter()
    rows = []
    for task in tasks:
        init_ids = np.arange(len(task.init_states()))
        if num_init_states is not None:
            init_ids = init_ids[:int(num_init_states)]
        n = min(int(num_envs), init_ids.size)
        batch = LiberoBatch([task], n, num_threads, cameras=cameras, height=height, width=width,
                            image_convention=image_convention, max_steps=max_steps,
                            settle_steps=settle_steps, scenes=scenes)
        success = np.zeros(init_ids.size, bool)
        steps = np.zeros(init_ids.size, np.int64)
        try:
            for start in range(0, init_ids.size, n):
                wave = init_ids[start:start + n]
                env_ids = np.arange(wave.size)
                videos = {int(i): [] for i in env_ids} if video_dir else None
                k_used = [8]

                def record(active, images, actions, out, videos=videos, k_used=k_used):
                    k_used[0] = actions.shape[1] if actions.ndim == 3 else 1
                    if videos is not None:
                        for j, i in enumerate(active):
                            if not videos[int(i)]:
                                videos[int(i)].append(images[j, 0].copy())
                            videos[int(i)].append(out.frames[j, 0].copy())

                ok, n_steps = run_episodes(batch, policy_fn, wave, env_ids,
                                           use_proprio=use_proprio, on_chunk=record)
                success[start:start + wave.size] = ok
                steps[start:start + wave.size] = n_steps
                if videos is not None:
                    fps = max(1, round(20 / k_used[0]))
                    for i, init_id in zip(env_ids, wave):
                        tag = "success" if ok[i] else "failure"
                        _write_video(Path(video_dir) / suite /
                                     f"task{task.index:02d}_init{init_id:02d}_{tag}.mp4",
                                     videos[int(i)], fps)
        finally:
            batch.close()
        row = {"task_index": task.index, "task": task.name, "language": task.language,
               "episodes": int(init_ids.size), "successes": int(success.sum()),
               "success_rate": float(success.mean()) if init_ids.size else 0.0,
               "init_state_ids": init_ids.tolist(), "success": success.tolist(),
               "episode_steps": steps.tolist()}
        rows.append(row)
        if log:
            log(f"[{suite}] task {task.index}: {row['successes']}/{row['episodes']} "
                f"({100 * row['success_rate']:.1f}%) {task.language}")
    episodes = sum(r["episodes"] for r in rows)
    successes = sum(r["successes"] for r in rows)
    results = {"suite": suite, "episode_length": max_steps, "settle_steps": settle_steps,
               "num_init_states": num_init_states, "cameras": list(cameras),
               "image_size": [height, width], "episodes": episodes, "successes": successes,
               "success_rate": successes / episodes if episodes else 0.0,
               "seconds": time.perf_counter() - t0, "tasks": rows}
    if out_dir is not None:
        write_results(results, out_dir)
    if log:
        log(markdown_table(results))
    return results


def markdown_table(results: dict) -> str:
    lines = [f"### {results['suite']}: {results['successes']}/{results['episodes']} "
             f"({100 * results['success_rate']:.1f}%)", "",
             "| task | instruction | successes | episodes | success rate |",
             "|---:|---|---:|---:|---:|"]
    for r in results["tasks"]:
        lines.append(f"| {r['task_index']} | {r['language']} | {r['successes']} | "
                     f"{r['episodes']} | {100 * r['success_rate']:.1f}% |")
    lines.append(f"| all | | {results['successes']} | {results['episodes']} | "
                 f"{100 * results['success_rate']:.1f}% |")
    return "\n".join(lines)


def write_results(results: dict, out_dir) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{results['suite']}_results.json", out / f"{results['suite']}_results.md"
    js.write_text(json.dumps(results, indent=2))
    md.write_text(markdown_table(results) + "\n")
    return js, md


# ---------------------------------------------------------------------- policy and CLI
def policy_from_checkpoint(ckpt: str, *, device: str | None = None, num_images: int = 2,
                           greedy: bool = True, temperature: float = 1.0,
                           use_proprio: bool = False) -> Callable:
    """`policy_fn` from an OpenVLA-OFT checkpoint directory (vlarl_fast.policy.load_pretrained)."""
    import torch

    from vlarl_fast.policy import load_pretrained

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    model = load_pretrained(ckpt, dtype=dtype, device=device, num_images=num_images,
                            use_proprio=use_proprio)
    model.eval()

    @torch.no_grad()
    def policy_fn(images, instructions, proprio=None):
        sample = model.sample_actions(images, list(instructions), proprio,
                                      temperature=temperature, greedy=greedy)
        return sample.actions.float().cpu().numpy()

    return policy_fn


def add_eval_arguments(parser) -> None:
    """Options of `vlarl-fast eval` (see main_eval)."""
    parser.add_argument("--suite", required=True, help="libero_spatial | libero_object | "
                        "libero_goal | libero_10 | libero_90")
    parser.add_argument("--policy", required=True, help="OpenVLA-OFT checkpoint directory")
    parser.add_argument("--num-init-states", type=int, default=None,
                        help="first N init states per task (default: all 50)")
    parser.add_argument("--tasks", type=int, nargs="+", default=None, help="task indexes")
    parser.add_argument("--num-envs", type=int, default=8, help="parallel envs per task")
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--episode-length", type=int, default=None,
                        help="policy steps per episode (default: the suite's; SimpleVLA-RL: 512)")
    parser.add_argument("--settle-steps", type=int, default=SETTLE_STEPS)
    parser.add_argument("--size", type=int, default=256, help="frame height and width")
    parser.add_argument("--cameras", nargs="+", default=list(CAMERAS))
    parser.add_argument("--proprio", action="store_true", help="feed the 8-d robot state")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out-dir", default="eval_results")
    parser.add_argument("--video-dir", default=None, help="write one mp4 per episode here")


def main_eval(args) -> dict:
    """Entry point of `vlarl-fast eval` (args from add_eval_arguments)."""
    policy_fn = policy_from_checkpoint(args.policy, device=args.device,
                                       num_images=len(args.cameras), greedy=not args.sample,
                                       temperature=args.temperature, use_proprio=args.proprio)
    return evaluate_suite(args.suite, policy_fn, args.num_init_states, args.num_envs,
                          args.num_threads, args.episode_length, args.settle_steps,
                          args.video_dir, task_ids=args.tasks, cameras=args.cameras,
                          height=args.size, width=args.size, use_proprio=args.proprio,
                          out_dir=args.out_dir)
