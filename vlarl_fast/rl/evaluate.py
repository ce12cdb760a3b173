"""The one evaluator: success rate of a policy on a fixed evaluation set of any task suite, greedy
by default (SimpleVLA-RL validates with do_sample=False).

The evaluation set is fixed by (suite, tasks, episodes_per_task, seed_offset): for every task,
the suite's evaluation init ids `eval_init_ids(episodes_per_task, seed_offset)` (built-in: held-out
seeds never used in training; LIBERO: init states offset..offset+n-1, SimpleVLA-RL's validation
set when they are all 50). Episodes run in batches of the env's slots through the same `rollout`
the trainer uses.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlarl_fast.envs.chunk_env import repeat_rows
from vlarl_fast.rl.rollout import rollout


@dataclass
class EvalSet:
    tasks: list  # task per episode
    task_ids: np.ndarray  # [E] position of the task in the suite's task list
    init_ids: np.ndarray  # [E] the suite's init id (seed or LIBERO init state index)
    states: np.ndarray | list  # [E, S] initial states (a list of rows where tasks differ in size)

    def __len__(self) -> int:
        return len(self.tasks)


def evaluation_set(suite, episodes_per_task: int, seed_offset: int = 0, repeats: int = 1) -> EvalSet:
    """The fixed evaluation set: `episodes_per_task` init ids per task, each `repeats` times
    (consecutive)."""
    if episodes_per_task == 0:
        return EvalSet([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0)))
    per_task = suite.eval_init_ids(episodes_per_task, seed_offset)
    tasks, task_ids, ids = [], [], []
    for t_index, task in enumerate(suite.tasks):
        tasks += [task] * (per_task.size * repeats)
        task_ids.append(np.full(per_task.size * repeats, t_index))
        ids.append(np.repeat(per_task, repeats))
    task_ids, ids = np.concatenate(task_ids), np.concatenate(ids)
    # states of one task's init ids, then repeated: each state is computed once
    rows = suite.init_states(task_ids[::repeats], ids[::repeats])
    return EvalSet(tasks, task_ids, ids, repeat_rows(rows, repeats))


def video_episodes(task_ids: np.ndarray, videos: int) -> np.ndarray:
    """Which episodes to film, [E] bool: `videos` of them spread over the tasks (the first
    episode of every task, then the second of every task, ...)."""
    task_ids = np.asarray(task_ids)
    rank = np.zeros(task_ids.size, dtype=np.int64)  # the episode's position within its task
    for t in np.unique(task_ids):
        rank[task_ids == t] = np.arange(int((task_ids == t).sum()))
    order = np.lexsort((np.arange(task_ids.size), rank))  # by rank, then by position in the set
    out = np.zeros(task_ids.size, dtype=bool)
    out[order[: max(videos, 0)]] = True
    return out


@torch.no_grad()
def evaluate(policy, env, eval_set: EvalSet, *, max_chunks: int, temperature: float = 1.6, greedy: bool = True,
             seed: int = 0, videos: int = 0, unnorm_key: str | None = None, all_done=None,
             pipeline: str = "lockstep") -> dict:
    """Returns {"success": overall rate, "per_task": {task: rate}, "episodes", "episode_success" [E],
    "episode_steps" [E], "videos": [(task name, success, frames [T, H, W, 3]), ...]}.
    `all_done`: the rollout's agreement over ranks (`rollout`), for a collective policy forward."""
    policy.eval()
    n_ep = len(eval_set)
    successes = np.zeros(n_ep, dtype=bool)
    steps = np.zeros(n_ep, dtype=np.int64)
    clips = []
    t0 = time.perf_counter()
    env_steps = 0
    gen = torch.Generator(device=policy.device).manual_seed(seed)  # sampling draws on the policy's device
    filmed = video_episodes(eval_set.task_ids, videos)
    for start in range(0, n_ep, env.num_envs):
        sl = slice(start, min(start + env.num_envs, n_ep))
        want_video = bool(filmed[sl].any())
        batch, times = rollout(policy, env, eval_set.tasks[sl], eval_set.states[sl], task_ids=eval_set.task_ids[sl],
                               group_ids=np.arange(sl.start, sl.stop), max_chunks=max_chunks,
                               temperature=temperature, greedy=greedy, generator=gen, record_video=want_video,
                               unnorm_key=unnorm_key, all_done=all_done, pipeline=pipeline)
        successes[sl] = batch.success
        steps[sl] = batch.executed.sum(axis=1)
        env_steps += times.env_steps
        if want_video:
            for i, clip in enumerate(times.extra["video"]):
                if filmed[sl.start + i]:
                    clips.append((eval_set.tasks[sl.start + i].name, bool(batch.success[i]), clip))
    per_task = {}
    for t_index in dict.fromkeys(eval_set.task_ids.tolist()):
        mask = eval_set.task_ids == t_index
        per_task[eval_set.tasks[int(np.argmax(mask))].name] = float(successes[mask].mean())
    return {"success": float(successes.mean()) if n_ep else 0.0, "per_task": per_task, "episodes": n_ep,
            "episode_success": successes.tolist(), "episode_steps": steps.tolist(),
            "env_steps": env_steps, "seconds": time.perf_counter() - t0, "videos": clips}


def results_table(suite_name: str, eval_set: EvalSet, result: dict) -> dict:
    """Per-task rows (task index, name, instruction, episodes, successes, rate, init ids, per-episode
    success and steps) and totals: what `vlarl-fast eval` prints and writes as JSON and Markdown."""
    success = np.asarray(result["episode_success"], dtype=bool)
    steps = np.asarray(result["episode_steps"], dtype=np.int64)
    rows = []
    for t_index in dict.fromkeys(eval_set.task_ids.tolist()):
        mask = eval_set.task_ids == t_index
        task = eval_set.tasks[int(np.argmax(mask))]
        rows.append({"task_index": int(getattr(task, "index", t_index)), "task": task.name,
                     "language": task.instruction, "episodes": int(mask.sum()),
                     "successes": int(success[mask].sum()), "success_rate": float(success[mask].mean()),
                     "init_state_ids": eval_set.init_ids[mask].tolist(), "success": success[mask].tolist(),
                     "episode_steps": steps[mask].tolist()})
    n = int(success.size)
    return {"suite": suite_name, "episodes": n, "successes": int(success.sum()),
            "success_rate": float(success.mean()) if n else 0.0, "seconds": result["seconds"], "tasks": rows}


def markdown_table(table: dict) -> str:
    lines = [f"### {table['suite']}: {table['successes']}/{table['episodes']} ({100 * table['success_rate']:.1f}%)",
             "", "| task | instruction | successes | episodes | success rate |", "|---:|---|---:|---:|---:|"]
    for r in table["tasks"]:
        lines.append(f"| {r['task_index']} | {r['language']} | {r['successes']} | {r['episodes']} | "
                     f"{100 * r['success_rate']:.1f}% |")
    lines.append(f"| all | | {table['successes']} | {table['episodes']} | {100 * table['success_rate']:.1f}% |")
    return "\n".join(lines)


def write_results(table: dict, out_dir) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{table['suite']}_results.json", out / f"{table['suite']}_results.md"
    js.write_text(json.dumps(table, indent=2))
    md.write_text(markdown_table(table) + "\n")
    return js, md
