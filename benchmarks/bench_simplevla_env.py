"""SimpleVLA-RL's LIBERO env side against SimpleVLAEnvPool, for the same batch and action chunks.

  SimpleVLA-RL        one `env_worker` process per row, started for the minibatch, two
                      multiprocessing Queues each, the rollout loop of
                      `_generate_minibatch_libero` (restated in tests/compat/simplevla_env_reference.py:
                      OffScreenRenderEnv at the given resolution with both cameras, seed(0), reset,
                      set_init_state, num_steps_wait dummy steps, then per chunk and action the
                      gripper post-processing and env.step; every observation pickled back)
  pool (both cams)    SimpleVLAEnvPool, persistent (built and warmed up once, as in training):
                      start() + one step() per chunk for the active rows, both cameras rendered
                      (what env_worker renders), LIBERO's observation phase reproduced
  pool (agentview)    the same with agentview only (what the patch renders when the policy reads
                      one image, num_images_in_input=1)

Per setup: the minibatch's wall time (SimpleVLA-RL: process start to join; pool: start() to the
last chunk) and the chunk throughput of its stepping phase (row-chunks per second, after all
init messages are in). Both sides run the same (task, trial) rows with the same actions, and
their outputs (complete, finish_step, last observation images) are compared.

Usage: python benchmarks/bench_simplevla_env.py [--smoke] [--suite libero_spatial] [--tasks 0 1]
       [--trials 4] [--chunks 4] [--resolution 256] [--threads 2]
Needs LIBERO's assets ($VLARL_LIBERO_ASSETS, default <repo>/../shared/libero_assets when it exists).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
_SHARED = REPO.parent / "shared" / "libero_assets"
if "VLARL_LIBERO_ASSETS" not in os.environ and _SHARED.is_dir():
    os.environ["VLARL_LIBERO_ASSETS"] = str(_SHARED)
if "LIBERO_CONFIG_PATH" not in os.environ and not Path("~/.libero/config.yaml").expanduser().exists():
    os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")
sys.path.insert(0, str(REPO / "tests" / "compat"))

import simplevla_env_reference as R  # noqa: E402

K = 8  # action_chunks_len
WAIT = 10  # num_steps_wait


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = set(info.get("Flags", "").split())
    keep = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                        "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return (f"{info.get('Model name', '?').strip()}, {os.cpu_count()} CPUs; lscpu flags: "
            f"{' '.join(keep)} (of {len(flags)} flags)")


class _QueueChannel:
    def __init__(self, in_q, out_q, process):
        self.in_q, self.out_q, self.process = in_q, out_q, process

    def put(self, action):
        self.in_q.put(action)

    def get(self):
        import queue

        while True:
            try:
                return self.out_q.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"env_worker process exited with code {self.process.exitcode}")


def run_simplevla(suite, rows, actions, resolution) -> dict:
    """SimpleVLA-RL's env side for one minibatch: processes + queues, as `_generate_minibatch_libero`."""
    config = R.Config(num_steps_wait=WAIT, action_chunks_len=K)
    max_steps = actions.shape[0] * K
    ctx = mp.get_context("fork")  # multiprocessing.Process's default on Linux (Python <= 3.13)
    last = {}
    marks = {}
    t0 = time.perf_counter()
    procs, channels = [], []
    for task_id, trial_id in rows:
        in_q, out_q = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=R.worker_process,
                        args=(in_q, out_q, suite, task_id, trial_id, config, False, 0, max_steps),
                        kwargs=dict(resolution=resolution))
        p.start()
        procs.append(p)
        channels.append(_QueueChannel(in_q, out_q, p))
    records, _ = R.rollout(channels, lambda step: actions[step // K], config, max_steps, False,
                           on_obs=lambda step, idx, obs: last.__setitem__(idx, obs), marks=marks)
    for p in procs:
        p.join(timeout=20)
        if p.is_alive():
            p.terminate()
    t1 = time.perf_counter()
    return dict(wall=t1 - t0, loop=marks["loop"] - marks["init"], records=records, last=last)


def run_pool(pool, suite, rows, actions) -> dict:
    """The pool for one minibatch, driven as the patched `_generate_minibatch_libero` drives it."""
    pool.max_steps = actions.shape[0] * K
    t0 = time.perf_counter()
    init = pool.start(suite, [t for t, _ in rows], [s for _, s in rows])
    last = {i: m["obs"] for i, m in enumerate(init)}
    t1 = time.perf_counter()
    for chunk in actions:
        active = np.nonzero(pool.active)[0]
        if active.size == 0:
            break
        for i, m in zip(active, pool.step(chunk[active], active)):
            last[int(i)] = m["obs"]
    t2 = time.perf_counter()
    records = [{"active": bool(a), "complete": bool(c), "finish_step": int(f)}
               for a, c, f in zip(pool.active, pool.complete, pool.finish_step)]
    return dict(wall=t2 - t0, loop=t2 - t1, records=records, last=last)


def _same(a, b, cams) -> bool:
    rec = all((x["complete"], x["finish_step"]) == (bool(y["complete"]), y["finish_step"])
              for x, y in zip(a["records"], b["records"]))
    img = all(np.array_equal(a["last"][i][f"{c}_image"], b["last"][i][f"{c}_image"])
              for i in a["last"] for c in cams)
    return rec and img


def run(smoke: bool = False, suite: str = "libero_spatial", tasks=(0, 1), trials: int = 4,
        chunks: int = 4, resolution: int = 256, threads: int = 2) -> str:
    if smoke:
        tasks, trials, chunks, resolution = tasks[:1], 1, 1, 32
    rows = [(t, s) for t in tasks for s in range(trials)]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, size=(chunks, len(rows), K, 7)).astype(np.float32)
    actions[..., 6] = rng.uniform(0.0, 1.0, size=actions.shape[:-1])
    load = os.getloadavg()[0]

    base = run_simplevla(suite, rows, actions, resolution)  # first: fork before any GL context here

    from vlarl_fast.compat.simplevla_env import SimpleVLAEnvPool
    from vlarl_fast.envs.libero.scene import CAMERAS

    results = [("SimpleVLA-RL: env_worker processes + queues", base, "")]
    scenes = {}
    for cams, label in ((CAMERAS, "both cameras"), (CAMERAS[:1], "agentview only")):
        pool = SimpleVLAEnvPool(resolution=resolution, num_threads=threads, cameras=cams, scenes=scenes)
        try:
            t = time.perf_counter()
            run_pool(pool, suite, rows, actions[:1])  # builds the engines (once per pool)
            build = time.perf_counter() - t
            r = run_pool(pool, suite, rows, actions)
        finally:
            pool.close()
        same = _same(r, base, cams)
        results.append((f"SimpleVLAEnvPool, {label}, {threads} threads", r,
                        f"first minibatch (engines built) {build:.1f} s; outputs equal: {'yes' if same else 'NO'}"))

    n = len(rows) * chunks
    lines = [
        f"SimpleVLA-RL LIBERO env side vs SimpleVLAEnvPool: {suite} tasks {list(tasks)} x trials "
        f"0..{trials - 1} = {len(rows)} rows, {chunks} chunks of {K} actions, num_steps_wait {WAIT}, "
        f"{resolution}x{resolution} cameras",
        f"machine: {_cpu()}; load {load:.2f} at start; mode: {'smoke' if smoke else 'full'}",
        "",
        "| setup | minibatch wall s | stepping chunks/s | chunks/s vs SimpleVLA-RL | minibatch vs SimpleVLA-RL |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r, _ in results:
        lines.append(f"| {name} | {r['wall']:.1f} | {n / r['loop']:.2f} | {base['loop'] / r['loop']:.1f}x "
                     f"| {base['wall'] / r['wall']:.1f}x |")
    lines.append("")
    lines += [f"{name}: {note}" for name, _, note in results if note]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="1 row, 1 chunk, 32 px")
    ap.add_argument("--suite", default="libero_spatial")
    ap.add_argument("--tasks", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--trials", type=int, default=4, help="trials (init states) per task")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(run(a.smoke, a.suite, tuple(a.tasks), a.trials, a.chunks, a.resolution, a.threads), flush=True)


if __name__ == "__main__":
    main()
