"""Rollout: the policy and the environment in one loop, stopping when every env is done.

Per chunk: one batched policy call on the latest frames of the envs still running (the policy's
image pipeline runs once per frame; its output, the model input, is what the trajectories keep), chunk
execution on those envs only (the engine renders their next frame at the chunk's end), done and
success per env. Nothing runs for an env after its episode ends, and the loop ends as soon as the
whole batch is done (SimpleVLA-RL runs every env for the full horizon).

Two schedules (`pipeline=`), with identical results for the same seeds:
- "lockstep": the policy infers the chunk of every running env, then the env executes it.
- "pipelined": the envs split into two stages; while the env simulates and renders one stage's
  chunk (`env.send` returns at once, `env.recv` collects it), the policy infers the other
  stage's. Needs an env with send/recv (LIBERO's pool); on others it runs lockstep. The
  sampling noise of chunk t is drawn once for all n envs (`policy.sampling_noise`), whatever
  the schedule, and every env's rows are its own: each env sees what it sees in lockstep.
- "auto": pipelined where the env supports it and the policy runs on an accelerator; lockstep
  when the policy runs on the CPU, where it competes with the engine's threads for the same
  cores (docs/rollout.md has the measurements behind this choice).

Under torch.distributed with a rollout policy whose forward is collective (FSDP all-gathers),
every rank must make the same number of policy calls: pass `all_done`, the agreement over ranks
(`distributed.make_all_done`). The loop then ends only when every rank's batch is done, and a
rank whose own envs are all done meanwhile runs padding calls (one row, greedy, results dropped,
`times.extra["padding_calls"]`) to keep the collectives in step. Such a rollout runs lockstep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from vlarl_fast.envs.chunk_env import ChunkResult
from vlarl_fast.rl.trajectories import TrajectoryBatch

PIPELINES = ("lockstep", "pipelined", "auto")


@dataclass
class RolloutTimes:
    policy_s: float = 0.0
    env_s: float = 0.0
    env_steps: int = 0
    policy_calls: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, other: "RolloutTimes") -> None:
        self.policy_s += other.policy_s
        self.env_s += other.env_s
        self.env_steps += other.env_steps
        self.policy_calls += other.policy_calls


def resolve_pipeline(pipeline: str, env, n: int, policy_device: str | torch.device = "cpu") -> str:
    """The schedule that runs: "pipelined" needs an env with send/recv and >= 2 episodes; "auto"
    picks it only for a policy off the CPU (on the CPU, lockstep measured as fast or faster)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {list(PIPELINES)}, got {pipeline!r}")
    can = hasattr(env, "send") and hasattr(env, "recv") and n >= 2
    if pipeline == "auto":
        return "pipelined" if can and torch.device(policy_device).type != "cpu" else "lockstep"
    return "pipelined" if pipeline == "pipelined" and can else "lockstep"


def _policy_device(policy) -> torch.device:
    """Where the policy's weights live (the CPU for a policy without parameters)."""
    try:
        return next(policy.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _recv_rows(env, rows: np.ndarray, inbox: dict) -> ChunkResult:
    """Receives until every env of `rows` has finished its chunk; its ChunkResult in `rows`' order
    (rows of other envs received meanwhile wait in `inbox`)."""
    while any(int(i) not in inbox for i in rows):
        got, res = env.recv(1)
        for j, i in enumerate(got.tolist()):
            inbox[i] = (res.executed[j], res.success[j], res.done[j],
                        None if res.frames is None else res.frames[j])
    parts = [inbox.pop(int(i)) for i in rows]
    return ChunkResult(executed=np.array([p[0] for p in parts]), success=np.array([p[1] for p in parts]),
                       done=np.array([p[2] for p in parts]),
                       frames=None if parts[0][3] is None else np.stack([p[3] for p in parts]))


@torch.no_grad()
def rollout(policy, env, tasks, states: np.ndarray, *, task_ids, group_ids, max_chunks: int,
            temperature: float, greedy: bool = False, generator: torch.Generator | None = None,
            record_video: bool = False, unnorm_key: str | None = None,
            pipeline: str = "lockstep",
            all_done: Callable[[bool], bool] | None = None) -> tuple[TrajectoryBatch, RolloutTimes]:
    """Runs len(tasks) episodes on env slots 0..n-1 from `states` (any `vlarl_fast.envs.chunk_env.
    ChunkEnv`); returns their trajectories. `unnorm_key` picks the policy's action statistics;
    `pipeline` the schedule (module docstring).

    `all_done(local_done) -> bool`: True when every rank is done (see the module docstring);
    None: this process decides alone.

    With `record_video`, `times.extra["video"]` is, per episode, every frame the policy saw
    (first camera) and the episode's final state (rendered with `env.render` where the env has
    one): a list of n arrays [T_i, H, W, 3], never padded.
    """
    n = len(tasks)
    if n > env.num_envs:
        raise ValueError(f"rollout: {n} episodes need as many env slots, the env has {env.num_envs}")
    if len(states) != n:
        raise ValueError(f"rollout: states must have {n} rows (one per task), got {len(states)}")
    schedule = resolve_pipeline(pipeline, env, n, _policy_device(policy)) if all_done is None else "lockstep"
    cfg = policy.config
    k, d = cfg.chunk_len, cfg.action_dim
    times = RolloutTimes()
    times.extra["pipeline"] = schedule
    ids = np.arange(n)
    instructions = np.array([t.instruction for t in tasks], dtype=object)

    t0 = time.perf_counter()
    frames = env.reset(states, list(tasks), env_ids=ids)
    use_proprio = bool(getattr(cfg, "use_proprio", False))
    proprio = env.proprio(ids) if use_proprio else None
    if use_proprio and proprio is None:
        raise ValueError("rollout: the policy uses proprio (use_proprio=True) but this env has no robot state")
    times.env_s += time.perf_counter() - t0
    times.extra["reset_s"] = times.env_s
    out = {"images": None}  # [n, T, num_images, S, S, 3]: the model input, allocated at the first chunk
    out_tokens = np.zeros((n, max_chunks, k * d), dtype=np.uint8)
    out_logp = np.zeros((n, max_chunks, k * d), dtype=np.float32)
    out_proprio = np.zeros((n, max_chunks, proprio.shape[1]), dtype=np.float32) if use_proprio else None
    executed = np.zeros((n, max_chunks), dtype=np.uint8)
    success = np.zeros(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    video = [[frames[i, 0].copy()] for i in range(n)] if record_video else None
    noise: dict[int, torch.Tensor] = {}  # chunk -> uniform draws of all n envs

    def infer(active: np.ndarray, t: int) -> np.ndarray:
        """The policy's chunk t for the envs `active`: records it, returns the actions."""
        state = None
        if use_proprio:
            out_proprio[active, t] = proprio[active]
            state = out_proprio[active, t]
        t0 = time.perf_counter()
        images = policy.model_images(frames[active])  # the image pipeline, once per frame
        levels = images.levels.cpu().numpy()
        if out["images"] is None:
            out["images"] = np.zeros((n, max_chunks, *levels.shape[1:]), dtype=np.uint8)
        out["images"][active, t] = levels
        uniform = None
        if not greedy:
            if t not in noise:
                noise.clear()
                noise[t] = policy.sampling_noise(n, generator)
            uniform = noise[t][torch.as_tensor(active, device=noise[t].device)]
        sample = policy.sample_actions(images, list(instructions[active]), state, temperature=temperature,
                                       greedy=greedy, generator=generator, unnorm_key=unnorm_key,
                                       uniform=uniform)
        out_tokens[active, t] = sample.tokens.cpu().numpy().astype(np.uint8)
        out_logp[active, t] = sample.logp.cpu().numpy()
        actions = sample.actions.cpu().numpy().astype(np.float64)
        times.policy_s += time.perf_counter() - t0
        times.policy_calls += 1
        return actions

    def apply(active: np.ndarray, t: int, result) -> None:
        executed[active, t] = result.executed
        success[active] |= result.success
        done[active] = result.done
        frames[active] = result.frames
        if use_proprio:
            proprio[active] = result.proprio if result.proprio is not None else env.proprio(active)
        if record_video:
            for row in np.nonzero(~result.done)[0]:
                video[active[row]].append(result.frames[row, 0].copy())
            ended = active[result.done]
            if ended.size and hasattr(env, "render"):  # the final state, for the video only
                for i, frame in zip(ended, env.render(ended)):
                    video[i].append(frame[0].copy())

    used = 0
    padding_calls = 0
    if schedule == "lockstep":
        for t in range(max_chunks):
            active = ids[~done]
            if (all_done(active.size == 0) if all_done is not None else active.size == 0):
                break
            if active.size == 0:  # other ranks still roll out: one dropped call keeps collectives in step
                t0 = time.perf_counter()
                policy.sample_actions(policy.model_images(frames[:1]), list(instructions[:1]),
                                      None if proprio is None else proprio[:1], temperature=temperature,
                                      greedy=True, unnorm_key=unnorm_key)
                times.policy_s += time.perf_counter() - t0
                padding_calls += 1
                continue
            used = t + 1
            actions = infer(active, t)
            t0 = time.perf_counter()
            result = env.step_chunk(actions, env_ids=active)
            times.env_s += time.perf_counter() - t0
            apply(active, t, result)
    else:  # two stages: one simulates while the policy infers the other's next chunk
        stages = [s for s in np.array_split(ids, 2) if s.size]
        chunk = [0] * len(stages)
        rows: list = [None] * len(stages)
        inbox: dict = {}

        def launch(s: int) -> bool:
            nonlocal used
            active = stages[s][~done[stages[s]]]
            if chunk[s] >= max_chunks or active.size == 0:
                return False
            used = max(used, chunk[s] + 1)
            actions = infer(active, chunk[s])
            t0 = time.perf_counter()
            env.send(actions, active)
            times.env_s += time.perf_counter() - t0
            rows[s] = active
            return True

        live = [launch(s) for s in range(len(stages))]
        while any(live):
            for s in range(len(stages)):
                if not live[s]:
                    continue
                t0 = time.perf_counter()
                result = _recv_rows(env, rows[s], inbox)
                times.env_s += time.perf_counter() - t0  # the time the policy side waits
                apply(rows[s], chunk[s], result)
                chunk[s] += 1
                live[s] = launch(s)
    if record_video:
        times.extra["video"] = [np.stack(clip) for clip in video]
    times.extra["padding_calls"] = padding_calls
    times.env_steps = int(executed.sum())
    out_images = out["images"]
    if out_images is None:  # max_chunks == 0: no policy call
        out_images = np.zeros((n, 0, cfg.num_images, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    batch = TrajectoryBatch(
        images=out_images[:, :used], tokens=out_tokens[:, :used], logp=out_logp[:, :used],
        executed=executed[:, :used], task_ids=np.asarray(task_ids, dtype=np.int64),
        group_ids=np.asarray(group_ids, dtype=np.int64), success=success, action_dim=d,
        proprio=None if out_proprio is None else out_proprio[:, :used])
    return batch, times
