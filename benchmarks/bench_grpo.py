"""One GRPO iteration on CPU: vlarl-fast vs a baseline built the way SimpleVLA-RL runs it.

    python benchmarks/bench_grpo.py [--smoke]      (or: vlarl-fast bench grpo [--smoke])

Both sides roll out the same groups (same policy, tasks, initial states, sampling seed) and update
the same policy copy once:
  vlarl-fast : native engine (`Engine.from_robosuite`, step_chunk with render="end"), one frame per
               chunk, stops when every env is done, uint8 frames / uint8 bins, fused log-prob +
               GRPO loss (`vlarl_fast.kernels`; the PyTorch path on CPU).
  baseline   : one process per env running robosuite's Python `env.step` with camera observations
               rendered at every step, float32 frames for every step kept on the host, the full
               episode length for every env (done envs keep stepping), eager loss (full-vocabulary
               LM-head logits -> log-softmax -> gather, PPO clip in plain torch ops).
Reports per-phase time, env steps/s and host memory per trajectory. CPU timings on a shared
machine are noisy: rerun before drawing fine conclusions.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import torch

os.environ.setdefault("MUJOCO_GL", "egl")


# ----------------------------------------------------------------------------- baseline env
def _env_worker(conn, image_size: int) -> None:
    from vlarl_fast.envs.builtin.demos import succeeded
    from vlarl_fast.envs.builtin.scene import CAMERA, BuiltinTableEnv

    env = BuiltinTableEnv(use_camera_obs=True, camera_size=image_size)
    env.reset()
    task = None
    while True:
        cmd, arg = conn.recv()
        if cmd == "reset":
            state, task = arg
            env.reset_to_flat_state(state)
            obs = env._get_observations(force_update=True)
            conn.send(obs[f"{CAMERA}_image"])
        elif cmd == "step":
            obs, _, _, _ = env.step(arg)
            conn.send((obs[f"{CAMERA}_image"], succeeded(env, task)))
        else:
            env.close()
            conn.close()
            return


class ProcessPerEnv:
    """SimpleVLA-RL's env layout: one worker process per env, robosuite stepping, per-step images."""

    def __init__(self, num_envs: int, image_size: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(num_envs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_env_worker, args=(child, image_size), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def reset(self, states, tasks):
        for c, s, t in zip(self.conns, states, tasks):
            c.send(("reset", (s, t)))
        return np.stack([c.recv() for c in self.conns])

    def step(self, actions):
        for c, a in zip(self.conns, actions):
            c.send(("step", a))
        out = [c.recv() for c in self.conns]
        return np.stack([o[0] for o in out]), np.array([o[1] for o in out])

    def close(self):
        for c in self.conns:
            c.send(("close", None))
        for p in self.procs:
            p.join(timeout=30)


def baseline_rollout(policy, env: ProcessPerEnv, tasks, states, *, max_chunks, temperature, generator):
    """Fixed episode length, float32 frames of every step kept, every env stepped to the end."""
    n = len(tasks)
    k = policy.config.chunk_len
    t_pol = t_env = 0.0
    t0 = time.perf_counter()
    frame = env.reset(states, tasks)
    t_env += time.perf_counter() - t0
    frames = np.zeros((n, max_chunks * k + 1, *frame.shape[1:]), dtype=np.float32)  # host float32
    frames[:, 0] = frame
    tokens = np.zeros((n, max_chunks, 56), dtype=np.int64)
    logp = np.zeros((n, max_chunks, 56), dtype=np.float32)
    success = np.zeros(n, dtype=bool)
    finish = np.full(n, max_chunks * k)
    steps = 0
    for t in range(max_chunks):
        t0 = time.perf_counter()
        s = policy.sample_actions(frames[:, t * k].astype(np.uint8)[:, None], [x.instruction for x in tasks],
                                  temperature=temperature, generator=generator)
        t_pol += time.perf_counter() - t0
        tokens[:, t], logp[:, t] = s.tokens.numpy(), s.logp.numpy()
        acts = s.actions.numpy().astype(np.float64)
        t0 = time.perf_counter()
        for j in range(k):
            img, ok = env.step(acts[:, j])
            steps += n
            frames[:, t * k + j + 1] = img
            newly = ok & ~success
            finish[newly] = t * k + j + 1
            success |= ok
        t_env += time.perf_counter() - t0
    footprint = (frames.nbytes + tokens.nbytes + logp.nbytes + finish.nbytes + success.nbytes) / n
    return dict(frames=frames, tokens=tokens, logp=logp, success=success, finish=finish,
                policy_s=t_pol, env_s=t_env, env_steps=steps, bytes_per_traj=footprint)


def baseline_update(model, optimizer, roll, instructions, group_ids, *, temperature, k):
    """Eager loss over every chunk of the fixed-length episodes (masked after the finish step)."""
    from vlarl_fast.rl.grpo import ADV_EPSILON

    t0 = time.perf_counter()
    r = torch.from_numpy(roll["success"].astype(np.float32))
    g = torch.from_numpy(np.asarray(group_ids))
    adv = torch.zeros_like(r)
    for gid in g.unique():  # per-group python loop, as veRL's compute_grpo_outcome_advantage
        m = g == gid
        adv[m] = (r[m] - r[m].mean()) / (r[m].std() + ADV_EPSILON)
    n, t = roll["tokens"].shape[:2]
    images = torch.from_numpy(roll["frames"][:, : t * k : k].astype(np.uint8)).reshape(n * t, 1, *roll["frames"].shape[2:])
    prompts = [p for p in instructions for _ in range(t)]
    obs = model.prepare(images, prompts)
    hidden = model.action_hidden_states(obs)
    cfg = model.config
    logits = model.language_model.lm_head(hidden).float()  # full vocabulary
    logits = logits[..., cfg.bin_start:cfg.bin_end] / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(roll["tokens"]).reshape(n * t, 56, 1)).squeeze(-1)
    logp = logp.reshape(n, t * 56)
    step_of_token = torch.arange(t * 56) // 7  # [t*56] control step index of each token
    mask = (step_of_token[None] < torch.from_numpy(roll["finish"])[:, None]).float()
    old = torch.from_numpy(roll["logp"]).reshape(n, t * 56)
    ratio = torch.exp(logp - old)
    pg = torch.maximum(-adv[:, None] * ratio, -adv[:, None] * ratio.clamp(0.8, 1.28))
    loss = ((pg * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return time.perf_counter() - t0, n * t * 56


# ----------------------------------------------------------------------------- the benchmark
def run(smoke: bool = False) -> str:
    from vlarl_fast.envs.builtin.chunk_env import make_chunk_env
    from vlarl_fast.envs.builtin.init_states import states_from_seeds
    from vlarl_fast.envs.builtin.scene import BuiltinTableEnv
    from vlarl_fast.envs.builtin.tasks import get_tasks
    from vlarl_fast.rl import grpo
    from vlarl_fast.rl.distributed import DistInfo
    from vlarl_fast.rl.policy_setup import build_policy
    from vlarl_fast.rl.rollout import rollout
    from vlarl_fast.rl.update import UpdateSettings, ppo_update

    groups, group_size = (1, 4) if smoke else (1, 8)
    max_chunks = 1 if smoke else 5
    image = 32 if smoke else 64
    n = groups * group_size
    tasks_all = get_tasks(["reach_red", "reach_green", "reach_blue"])
    ep_tasks = [tasks_all[i % 3] for i in range(groups) for _ in range(group_size)]
    instructions = [t.instruction for t in ep_tasks]
    state_env = BuiltinTableEnv()
    states = np.repeat(states_from_seeds(state_env, range(groups)), group_size, axis=0)
    state_env.close()
    policy = build_policy(32, 0)
    warm = np.zeros((n, 1, image, image, 3), np.uint8)  # first-call costs out of the timings
    policy.sample_actions(warm, instructions)
    policy.action_logprob(warm, instructions, torch.zeros(n, 56, dtype=torch.long)).sum().backward()
    policy.zero_grad(set_to_none=True)
    group_ids = np.repeat(np.arange(groups), group_size)
    rows = []

    # vlarl-fast
    t0 = time.perf_counter()
    env = make_chunk_env("engine", n, max_steps=max_chunks * 8, image_size=image, num_threads=2)
    build_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch, rt = rollout(policy, env, ep_tasks, states, task_ids=np.array([tasks_all.index(t) for t in ep_tasks]),
                        group_ids=group_ids, max_chunks=max_chunks, temperature=1.6,
                        generator=torch.Generator().manual_seed(0))
    roll_fast = time.perf_counter() - t0
    env.close()
    fast_model = copy.deepcopy(policy)
    opt = torch.optim.AdamW(fast_model.parameters(), lr=1e-5, weight_decay=0.01)
    m = ppo_update(fast_model, opt, batch, grpo.advantages(batch), instructions[:1] and [t.instruction for t in tasks_all],
                   UpdateSettings(micro_batch_size=n), DistInfo(), torch.Generator().manual_seed(0))
    rows.append(("vlarl-fast", build_fast, roll_fast, rt.policy_s, rt.env_s, m["time/update_s"], rt.env_steps,
                 batch.bytes_per_trajectory(), float(batch.success.mean())))

    # baseline
    t0 = time.perf_counter()
    benv = ProcessPerEnv(n, image)
    benv.reset(states, ep_tasks)  # workers are up once the first reset answers
    build_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    roll = baseline_rollout(policy, benv, ep_tasks, states, max_chunks=max_chunks, temperature=1.6,
                            generator=torch.Generator().manual_seed(0))
    roll_base = time.perf_counter() - t0
    benv.close()
    base_model = copy.deepcopy(policy)
    opt = torch.optim.AdamW(base_model.parameters(), lr=1e-5, weight_decay=0.01)
    upd_base, _ = baseline_update(base_model, opt, roll, instructions, group_ids, temperature=1.6, k=8)
    rows.append(("baseline", build_base, roll_base, roll["policy_s"], roll["env_s"], upd_base, roll["env_steps"],
                 roll["bytes_per_traj"], float(roll["success"].mean())))

    head = (f"GRPO iteration, {n} rollouts ({groups} group x {group_size}), <= {max_chunks} chunks x 8 steps, "
            f"{image}x{image} frames, tiny OpenVLA-OFT, CPU ({os.cpu_count()} cores, torch threads "
            f"{torch.get_num_threads()})")
    lines = [head,
             f"{'':<11}{'setup s':>9}{'rollout s':>11}{'policy s':>10}{'env s':>9}{'update s':>10}{'iter s':>9}"
             f"{'env steps':>11}{'steps/s':>9}{'KiB/traj':>10}{'success':>9}"]
    for name, build, roll_s, pol_s, env_s, upd_s, steps, bpt, succ in rows:
        lines.append(f"{name:<11}{build:>9.1f}{roll_s:>11.2f}{pol_s:>10.2f}{env_s:>9.2f}{upd_s:>10.2f}"
                     f"{roll_s + upd_s:>9.2f}{steps:>11d}{steps / max(env_s, 1e-9):>9.0f}{bpt / 1024:>10.1f}{succ:>9.2f}")
    f, b = rows
    lines.append(f"speed-up: rollout x{b[2] / f[2]:.1f}, update x{b[5] / f[5]:.1f}, iteration x{(b[2] + b[5]) / (f[2] + f[5]):.1f}; "
                 f"host memory per trajectory x{b[7] / f[7]:.0f} smaller")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(smoke="--smoke" in sys.argv))
