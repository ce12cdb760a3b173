"""The SimpleVLA-RL-style baseline of `benchmarks/bench_grpo.py`: one process per env with
robosuite's Python stepping and per-step camera observations, float32 frames of every step kept on
the host, the full episode length for every env, and an eager loss. It lives in the package so
that spawned env workers can import it however the benchmark was loaded."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import torch


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
