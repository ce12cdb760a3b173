"""Success rate on held-out initial states (greedy decoding by default, as SimpleVLA-RL validates).

The evaluation set is fixed by (tasks, episodes_per_task, seed_offset): task i's episode j starts
from `init_states.eval_seeds` seed j, never used in training. Episodes run in batches of the env's
slots through the same `rollout` the trainer uses.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from vlarl_fast.envs.builtin.init_states import eval_seeds, states_from_seeds
from vlarl_fast.rl.rollout import rollout


def evaluation_set(state_env, tasks, episodes_per_task: int, seed_offset: int = 0, repeats: int = 1):
    """(tasks per episode, task ids, states [E, S]) of the fixed held-out set: `episodes_per_task`
    initial states per task, each `repeats` times (consecutive)."""
    if episodes_per_task == 0:
        return [], np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    seeds = eval_seeds(episodes_per_task, seed_offset)
    states = np.repeat(states_from_seeds(state_env, seeds), repeats, axis=0)
    episodes_per_task *= repeats
    ep_tasks, ep_ids, ep_states = [], [], []
    for t_index, task in enumerate(tasks):
        ep_tasks += [task] * episodes_per_task
        ep_ids += [t_index] * episodes_per_task
        ep_states.append(states)
    return ep_tasks, np.array(ep_ids), np.concatenate(ep_states)


@torch.no_grad()
def evaluate(policy, env, eval_set, *, max_chunks: int, temperature: float = 1.6, greedy: bool = True,
             seed: int = 0, videos: int = 0) -> dict:
    """Returns {"success": overall rate, "per_task": {task: rate}, "episodes", "videos": [...]}."""
    ep_tasks, ep_ids, states = eval_set
    policy.eval()
    successes = np.zeros(len(ep_tasks), dtype=bool)
    clips = []
    t0 = time.perf_counter()
    env_steps = 0
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(ep_tasks), env.num_envs):
        sl = slice(start, min(start + env.num_envs, len(ep_tasks)))
        want_video = len(clips) < videos
        batch, times = rollout(policy, env, ep_tasks[sl], states[sl], task_ids=ep_ids[sl],
                               group_ids=np.arange(sl.start, sl.stop), max_chunks=max_chunks,
                               temperature=temperature, greedy=greedy, generator=gen, record_video=want_video)
        successes[sl] = batch.success
        env_steps += times.env_steps
        if want_video:
            for i, clip in enumerate(times.extra["video"][: videos - len(clips)]):
                clips.append((ep_tasks[sl.start + i].name, bool(batch.success[i]), clip))
    per_task = {}
    for task in dict.fromkeys(ep_tasks):
        mask = np.array([t is task for t in ep_tasks])
        per_task[task.name] = float(successes[mask].mean())
    return {"success": float(successes.mean()), "per_task": per_task, "episodes": len(ep_tasks),
            "env_steps": env_steps, "seconds": time.perf_counter() - t0, "videos": clips}
