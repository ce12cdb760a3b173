"""SimpleVLA-RL's LIBERO GRPO iteration, restated for `vlarl-fast bench grpo --suite libero_*`.

From SimpleVLA-RL's `verl/workers/rollout/rob_rollout.py` (`env_worker`,
`_generate_minibatch_libero`) and `verl/workers/actor/dp_rob.py`:
- one process per env, each with LIBERO's `OffScreenRenderEnv` at 256x256 and both cameras
  (agentview, robot0_eye_in_hand) rendered as observations at every `env.step`; `seed(0)`,
  `reset()`, `set_init_state`, then `num_steps_wait` no-op steps;
- a chunk of actions per message, stepped action by action until done or `max_steps` (512), the
  last observation sent back;
- the main loop runs `while step < max_steps: step += chunk`: the policy runs on every env at
  every chunk (done envs included; only active envs are stepped), and every chunk's model input
  (float32 pixel values) is kept on the host;
- before the update, old log-probs are recomputed over every chunk of every trajectory, and the
  update's forward and backward take full-vocabulary logits (LM head over the whole vocabulary,
  then the action bins sliced), the loss masked after each trajectory's finish step.
The same policy object and preprocessing serve both sides, so the comparison is of the
rollout/env layout and the log-prob path, not of the model.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import torch


def _env_worker(conn, suite: str, task_index: int, init_id: int, max_steps: int, settle_steps: int,
                size: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from vlarl_fast.envs.libero.registry import NOOP_ACTION, get_task
    from vlarl_fast.envs.libero.scene import CAMERAS, make_libero_env

    task = get_task(suite, task_index)
    env = make_libero_env(task, cameras=CAMERAS, height=size, width=size)
    env.seed(0)
    env.reset()
    obs = env.set_init_state(task.init_states()[init_id])
    for _ in range(settle_steps):
        obs, _, _, _ = env.step(NOOP_ACTION.tolist())
    conn.send(obs["agentview_image"][::-1, ::-1].copy())  # OpenVLA orientation (rotate 180)
    finish, active, complete = 0, True, False
    while True:
        actions = conn.recv()
        if actions is None:
            env.close()
            return
        for a in actions:  # the policy's actions are already env actions (gripper post-processed)
            obs, _, done, _ = env.step(a.tolist())
            finish += 1
            if done or finish >= max_steps:
                active, complete = False, bool(done)
                break
        conn.send((obs["agentview_image"][::-1, ::-1].copy(), active, complete, finish))


class LiberoProcessPerEnv:
    """SimpleVLA-RL's env layout: one LIBERO env per worker process."""

    def __init__(self, suite: str, prompts, *, max_steps: int, settle_steps: int, size: int = 256):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for task_index, init_id in prompts:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_env_worker, args=(child, suite, int(task_index), int(init_id), max_steps,
                                                      settle_steps, size), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        self.first_frames = np.stack([c.recv() for c in self.conns])  # workers ready, episodes started

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=60)


def baseline_rollout(policy, env: LiberoProcessPerEnv, instructions, *, max_steps: int, temperature: float,
                     generator, unnorm_key: str) -> dict:
    n = len(instructions)
    k = policy.config.chunk_len
    frames = env.first_frames.copy()
    active = np.ones(n, dtype=bool)
    complete = np.zeros(n, dtype=bool)
    finish = np.zeros(n, dtype=np.int64)
    pixels, tokens, logp = [], [], []
    t_pol = t_env = 0.0
    step = 0
    env_steps = 0
    while step < max_steps:
        t0 = time.perf_counter()
        s = policy.sample_actions(frames[:, None], list(instructions), temperature=temperature,
                                  generator=generator, unnorm_key=unnorm_key)
        t_pol += time.perf_counter() - t0
        pixels.append(s.obs.pixel_values.float().cpu().numpy())  # float32 model input kept on the host
        tokens.append(s.tokens.cpu().numpy())
        logp.append(s.logp.cpu().numpy())
        acts = s.actions.float().cpu().numpy().astype(np.float64)
        t0 = time.perf_counter()
        idx = np.nonzero(active)[0]
        for i in idx:
            env.conns[i].send(acts[i])
        for i in idx:
            frame, act, comp, fin = env.conns[i].recv()
            frames[i] = frame
            env_steps += fin - finish[i]
            active[i], complete[i], finish[i] = act, comp, fin
        t_env += time.perf_counter() - t0
        step += k
    pixels = np.stack(pixels, axis=1)  # [n, T, images, 6, S, S]
    out = dict(pixels=pixels, tokens=np.stack(tokens, axis=1), logp=np.stack(logp, axis=1), success=complete,
               finish=finish, policy_s=t_pol, env_s=t_env, env_steps=int(env_steps))
    out["bytes_per_traj"] = sum(out[k].nbytes for k in ("pixels", "tokens", "logp", "finish", "success")) / n
    return out


def _full_vocab_logprob(model, pixels: torch.Tensor, prompts, tokens: torch.Tensor, temperature: float):
    from vlarl_fast.policy.processor import Observation

    obs = model.prepare(pixels, prompts)
    assert isinstance(obs, Observation)
    hidden = model.action_hidden_states(obs)
    cfg = model.config
    logits = model.language_model.lm_head(hidden).float()  # [N, 56, V]: the whole vocabulary
    logits = logits[..., cfg.bin_start:cfg.bin_end] / temperature
    return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)


def _flat(roll, instructions):
    n, t = roll["tokens"].shape[:2]
    pixels = torch.from_numpy(roll["pixels"].reshape(n * t, *roll["pixels"].shape[2:]))
    prompts = [p for p in instructions for _ in range(t)]
    tokens = torch.from_numpy(roll["tokens"].reshape(n * t, -1).astype(np.int64))
    return n, t, pixels, prompts, tokens


@torch.no_grad()
def baseline_old_logprob(model, roll, instructions, *, temperature: float, micro: int = 32) -> float:
    """SimpleVLA-RL recomputes old log-probs with the training model over every chunk (seconds)."""
    t0 = time.perf_counter()
    n, t, pixels, prompts, tokens = _flat(roll, instructions)
    out = [_full_vocab_logprob(model, pixels[i:i + micro], prompts[i:i + micro], tokens[i:i + micro], temperature)
           for i in range(0, n * t, micro)]
    roll["old_logp"] = torch.cat(out).reshape(n, t * tokens.shape[1]).numpy()
    return time.perf_counter() - t0


def baseline_update(model, optimizer, roll, instructions, group_ids, *, temperature: float, micro: int = 32) -> float:
    """One PPO step over every chunk of the fixed-length trajectories, full-vocabulary logits."""
    from vlarl_fast.rl.grpo import ADV_EPSILON

    t0 = time.perf_counter()
    r = torch.from_numpy(roll["success"].astype(np.float32))
    g = torch.from_numpy(np.asarray(group_ids))
    adv = torch.zeros_like(r)
    for gid in g.unique():  # per-group loop, as compute_grpo_outcome_advantage
        m = g == gid
        adv[m] = (r[m] - r[m].mean()) / (r[m].std() + ADV_EPSILON)
    n, t, pixels, prompts, tokens = _flat(roll, instructions)
    d = tokens.shape[1]
    k = d // 7
    old = torch.from_numpy(roll["old_logp"])
    step_of_token = (torch.arange(t)[:, None] * k + torch.arange(d)[None] // 7).reshape(-1)  # [t*d] env step
    mask = (step_of_token[None] < torch.from_numpy(roll["finish"])[:, None]).float()  # [n, t*d]
    optimizer.zero_grad()
    rows_per_traj = t
    for start in range(0, n, max(1, micro // rows_per_traj)):  # whole trajectories per micro-batch
        stop = min(n, start + max(1, micro // rows_per_traj))
        sl = slice(start * t, stop * t)
        logp = _full_vocab_logprob(model, pixels[sl], prompts[sl], tokens[sl], temperature).reshape(stop - start, t * d)
        ratio = torch.exp(logp - old[start:stop])
        a = adv[start:stop, None]
        pg = torch.maximum(-a * ratio, -a * ratio.clamp(0.8, 1.28))
        m = mask[start:stop]
        loss = ((pg * m).sum(1) / m.sum(1).clamp(min=1)).sum() / n
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return time.perf_counter() - t0
