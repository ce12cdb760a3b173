"""LIBERO rollout schedules: lockstep vs pipelined, and one env pool for a whole suite.

In one run, per suite (libero_spatial, libero_10): 16 envs over 4 tasks (4 each), agentview +
wrist at 256x256, 8-step chunks, every env on one `LiberoChunkEnv` (one EnginePool for all tasks):

  rollout rows      `vlarl_fast.rl.rollout` (the project's one loop) with pipeline=lockstep and
                    =pipelined, the policy's forward modelled two ways:
                    - tiny: the tiny OpenVLA-OFT preset on this CPU (it competes with the engine's
                      threads for the same cores);
                    - device: a call that sleeps (GIL and CPU released) for the 7B OpenVLA-OFT
                      rollout forward measured on an NVIDIA H200 in bf16 by this project
                      (docs/gpu.md, `bench_policy.py --gpu-7b`, 1 image: 118.95 ms at B=8,
                      189.69 ms at B=16; linear in B between and beyond), then returns random
                      actions: what the sim side sees of a policy on a GPU.
                    Columns: rollout steps/s (control steps of all envs per wall second), the
                    fraction of the wall time the policy side waits for the env and the env side
                    waits for the policy, the measured sim time per round of all envs (lockstep
                    env time), the policy time per round in that schedule, the bound
                    max(sim, policy) and sim + policy, and wall time per round / bound.
  pool rows         per-chunk cost of one step_chunk of 16 envs: a mixed-task pool (4 tasks x 4
                    envs, one native job), a single-task pool (16 envs of task 0), and today's
                    per-task stepping (4 engines of 4 envs, each its own threads, stepped one
                    after another from Python), with the ratio to the single-task pool.
  episode start     reset of the 16 envs (init state, LIBERO's first step, settle steps) against
                    the rollout's chunks.

  --gpu-7b          adds rows "7b-gpu": the real OpenVLA-OFT 7B layout (random bf16 weights; time
                    does not depend on values) on the CUDA device, both cameras, in the rollout:
                    the measured counterpart of the device model (scripts/gpu_check.sh runs it).

Usage: python benchmarks/bench_rollout_pipeline.py [--smoke] [--chunks 6] [--gpu-7b]
`run(smoke)` returns the printed table. Needs LIBERO's assets ($VLARL_LIBERO_ASSETS, default
<repo>/../shared/libero_assets when it exists).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))
from cpu_paths import cpu_line  # noqa: E402
from libero_setup import libero_defaults  # noqa: E402

libero_defaults()

import torch  # noqa: E402

CAMERAS = ("agentview", "robot0_eye_in_hand")
KEY = "bench_no_noops"
STATS = {KEY: {"action": {"q01": [-0.3] * 6 + [0.0], "q99": [0.3] * 6 + [1.0],
                          "mask": [True] * 6 + [False]}}}
# 7B OpenVLA-OFT bf16 rollout forward (sample_actions) on an NVIDIA H200, docs/gpu.md.
DEVICE_MS = {8: 118.95, 16: 189.69}


def device_seconds(batch: int) -> float:
    """The modelled device forward time of a batch: linear through the two measured points."""
    (b0, t0), (b1, t1) = sorted(DEVICE_MS.items())
    return max(t0 + (batch - b0) * (t1 - t0) / (b1 - b0), 1.0) / 1e3



def tiny_policy(num_images: int):
    from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer

    torch.manual_seed(0)
    cfg = OpenVLAOFTConfig.tiny(num_images=num_images, image_size=32)
    return OpenVLAOFT(cfg, tokenizer=PromptTokenizer.tiny(), norm_stats=STATS).eval()


def gpu_7b_policy(num_images: int, device: str = "cuda"):
    """The 7B OpenVLA-OFT layout with random bf16 weights on `device`, in eval mode (the prompt
    tokenizer is the tiny one, its ids inside the 7B vocabulary)."""
    from bench_policy import random_weight_model
    from vlarl_fast.policy import OpenVLAOFTConfig, PromptTokenizer

    torch.manual_seed(0)
    return random_weight_model(OpenVLAOFTConfig.openvla_7b(num_images=num_images), torch.device(device),
                               torch.bfloat16, tokenizer=PromptTokenizer.tiny(), norm_stats=STATS).eval()


class SyncedPolicy:
    """A policy on a CUDA device whose `sample_actions` returns once the device is done, so that
    the rollout's policy time is the forward's and the schedule's overlap is real."""

    def __init__(self, model):
        self._model = model
        self.config = model.config

    def __getattr__(self, name):
        return getattr(self._model, name)

    def sample_actions(self, *args, **kwargs):
        out = self._model.sample_actions(*args, **kwargs)
        if self._model.device.type == "cuda":
            torch.cuda.synchronize()
        return out


class DevicePolicy:
    """The rollout's view of a policy whose forward runs on a GPU: `sample_actions` sleeps for
    the device time of its batch (GIL and CPU free, as while a CUDA forward runs) and returns
    random small actions; the image pipeline is part of that time (it runs on the device)."""

    def __init__(self, tiny):
        self.config = tiny.config
        self._tiny = tiny
        self.busy_s = 0.0

    def model_images(self, frames):
        from vlarl_fast.policy.processor import ModelImages

        s = self.config.image_size
        return ModelImages(torch.zeros((len(frames), self.config.num_images, s, s, 3), dtype=torch.uint8))

    def sampling_noise(self, batch, generator=None):
        return self._tiny.sampling_noise(batch, generator)

    def sample_actions(self, images, instructions, state=None, *, uniform=None, **_):
        from types import SimpleNamespace

        b = len(instructions)
        time.sleep(device_seconds(b))
        self.busy_s += device_seconds(b)
        u = uniform[:, :, 0] if uniform is not None else torch.rand(b, 56)
        tokens = (u * 255).long()
        actions = (u.reshape(b, 8, 7) - 0.5) * 0.6
        actions[..., 6] = -1.0
        return SimpleNamespace(tokens=tokens, logp=torch.zeros(b, 56), actions=actions)


def _episodes(suite: str, tasks_n: int, per_task: int):
    from vlarl_fast.envs.libero.registry import get_task

    tasks, states = [], []
    for t in range(tasks_n):
        task = get_task(suite, t)
        for i in range(per_task):
            tasks.append(task)
            states.append(task.init_states()[i])
    return tasks, states


def _rollout_rows(env, policy, name, tasks, states, chunks, threads):
    from vlarl_fast.rl.rollout import rollout

    rows, sim_round, n = {}, None, len(tasks)
    for schedule in ("lockstep", "pipelined"):
        if isinstance(policy, DevicePolicy):
            policy.busy_s = 0.0
        t0 = time.perf_counter()
        batch, times = rollout(policy, env, tasks, states, task_ids=np.zeros(n), group_ids=np.arange(n),
                               max_chunks=chunks, temperature=1.6, generator=torch.Generator().manual_seed(0),
                               unnorm_key=KEY, pipeline=schedule)
        wall = time.perf_counter() - t0 - times.extra["reset_s"]  # the loop, episode start aside
        env_s = times.env_s - times.extra["reset_s"]
        rounds = batch.executed.shape[1]
        steps = int(batch.executed.sum())
        policy_round = (policy.busy_s if isinstance(policy, DevicePolicy) else times.policy_s) / rounds
        if schedule == "lockstep":
            sim_round = env_s / rounds  # lockstep: the env's whole time is simulation
        bound, total = max(sim_round, policy_round), sim_round + policy_round
        policy_wait = env_s / wall  # the policy side's time in step_chunk / send / recv
        env_wait = max(0.0, 1.0 - sim_round * rounds / wall)
        rows[schedule] = (f"{name:<6} {schedule:<9} {steps / wall:9.1f} {policy_wait:9.2f} {env_wait:8.2f} "
                          f"{sim_round:8.3f} {policy_round:8.3f} {bound:8.3f} {total:8.3f} "
                          f"{wall / rounds / bound:8.2f}")
    return [rows["lockstep"], rows["pipelined"]]


def _chunk_cost(step, reps: int) -> float:
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def _pool_rows(suite, tasks_n, per_task, size, threads, reps, scenes):
    from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    tasks, states = _episodes(suite, tasks_n, per_task)
    n = len(tasks)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-0.3, 0.3, size=(n, 8, 7))
    acts[..., 6] = -1.0
    opts = dict(cameras=CAMERAS, height=size, width=size, max_steps=8 * (reps + 2) * 4)
    out = []
    single_tasks = [tasks[0]] * n
    single_states = [tasks[0].init_states()[i % 50] for i in range(n)]
    costs = {}
    for label, ts, ss in (("single-task pool", single_tasks, single_states), ("mixed-task pool", tasks, states)):
        env = LiberoChunkEnv(n, threads, scenes=scenes, **opts)
        try:
            env.reset(ss, ts, render=False)  # builds the task engines
            t0 = time.perf_counter()
            env.reset(ss, ts)  # an episode start on built engines, with its frames
            reset_s = time.perf_counter() - t0
            costs[label] = _chunk_cost(lambda: env.step_chunk(acts), reps)
        finally:
            env.close()
        costs[label + " reset"] = reset_s
    engines = []
    try:
        for t in range(tasks_n):
            key = (tasks[t * per_task].suite, tasks[t * per_task].index)
            eng = LiberoTaskEngine(scenes[key], per_task, threads, **opts)
            eng.reset(init_states=np.stack(states[t * per_task:(t + 1) * per_task]), render=False)
            engines.append(eng)

        def per_task_step():
            for t, eng in enumerate(engines):
                eng.step(acts[t * per_task:(t + 1) * per_task], render=True)

        costs["per-task engines"] = _chunk_cost(per_task_step, reps)
    finally:
        for eng in engines:
            eng.close()
    base = costs["single-task pool"]
    for label in ("single-task pool", "mixed-task pool", "per-task engines"):
        out.append(f"{label:<44} {costs[label] * 1e3:10.1f} ms {costs[label] / base:8.2f}x")
    return out, costs["mixed-task pool reset"], costs["mixed-task pool"]


class _Scenes(dict):
    def __missing__(self, key):
        from vlarl_fast.envs.libero.registry import get_task
        from vlarl_fast.envs.libero.scene import LiberoScene

        self[key] = LiberoScene(get_task(*key))
        return self[key]


def run(smoke: bool = False, chunks: int | None = None, gpu_7b: bool = False) -> str:
    from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv

    suites = ["libero_spatial"] if smoke else ["libero_spatial", "libero_10"]
    tasks_n, per_task = (2, 2) if smoke else (4, 4)
    size = 64 if smoke else 256
    chunks = chunks or (2 if smoke else 6)
    reps = 1 if smoke else 3
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    lines = [cpu_line(),
             f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             f"{tasks_n * per_task} envs over {tasks_n} tasks, {', '.join(CAMERAS)} at {size}x{size}, "
             f"8-step chunks, {chunks} chunks per rollout, engine pool of {threads} threads, torch "
             f"{torch.get_num_threads()} threads",
             f"device model: 7B OpenVLA-OFT bf16 rollout forward on NVIDIA H200 (docs/gpu.md): "
             f"{DEVICE_MS[8]} ms at B=8, {DEVICE_MS[16]} ms at B=16"]
    tiny = tiny_policy(num_images=len(CAMERAS))
    policies = [("tiny", tiny), ("device", DevicePolicy(tiny))]
    if gpu_7b:
        if not torch.cuda.is_available():
            raise SystemExit("bench_rollout_pipeline: --gpu-7b needs a CUDA device; none is visible")
        lines.append(f"7b-gpu: OpenVLA-OFT 7B layout, random bf16 weights, on {torch.cuda.get_device_name()}")
        policies.append(("7b-gpu", SyncedPolicy(gpu_7b_policy(len(CAMERAS)))))
    scenes = _Scenes()
    for suite in suites:
        tasks, states = _episodes(suite, tasks_n, per_task)
        lines += ["", f"== {suite}: rollout",
                  f"{'policy':<6} {'schedule':<9} {'steps/s':>9} {'pol.wait':>9} {'env.wait':>8} "
                  f"{'sim/rnd':>8} {'pol/rnd':>8} {'max':>8} {'sum':>8} {'wall/max':>8}"]
        env = LiberoChunkEnv(len(tasks), threads, cameras=CAMERAS, height=size, width=size,
                             max_steps=8 * chunks, scenes=scenes)
        try:
            for name, policy in policies:
                lines += _rollout_rows(env, policy, name, tasks, states, chunks, threads)
        finally:
            env.close()
        pool, reset_s, chunk_s = _pool_rows(suite, tasks_n, per_task, size, threads, reps, scenes)
        lines += ["", f"== {suite}: one step_chunk of {tasks_n * per_task} envs (8 steps, frames at the end)",
                  f"{'':<44} {'per chunk':>13} {'vs single':>9}"] + pool
        episode = 64  # LIBERO's 512-step limit at 8-step chunks
        lines.append(f"episode start (reset of {tasks_n * per_task} envs: init state, LIBERO's first step, "
                     f"settle steps): {reset_s:.2f} s = {reset_s / chunk_s:.1f} chunks; "
                     f"{100 * reset_s / (reset_s + episode * chunk_s):.1f}% of a {episode}-chunk episode")
    lines.append("")
    lines.append(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 tasks x 2 envs, 64 px, 2 chunks")
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--gpu-7b", action="store_true", help="also the real 7B layout on the CUDA device")
    args = parser.parse_args()
    print(run(args.smoke, args.chunks, args.gpu_7b))


if __name__ == "__main__":
    main()
