"""LIBERO chunk throughput: LIBERO's envs the SimpleVLA-RL way vs the native engine vs the limit.

One LIBERO task (default libero_spatial task 0), 8-action chunks, agentview + wrist cameras at
256x256, one frame per chunk for the policy, in one run:

  LIBERO, W worker processes     one OffScreenRenderEnv per process, fed a chunk per message
                                 through multiprocessing Pipes, stepping action by action (each
                                 env.step renders both cameras as observations), the chunk's last
                                 frames sent back: SimpleVLA-RL's rollout workers (W = 1, 2)
  native engine, T threads       LiberoTaskEngine.step: N envs, the chunk natively with LIBERO's
                                 success check after every control step, frames rendered once at
                                 the chunk's end (T = --threads, default 1, 2); and at 1 thread
                                 without cameras (the per-core rate of physics + control + check)
  limit                          per chunk and env: 200 raw mj_step (a bare C loop) + one raw
                                 render of each camera (mujoco.Renderer, a fresh process)

Throughput is chunks per second summed over envs. Usage:
    python benchmarks/bench_libero.py [--smoke] [--suite libero_spatial] [--task 0] [--envs 2] [--threads 1,2]
`run(smoke)` returns the printed table. Needs LIBERO's assets: $VLARL_LIBERO_ASSETS (default
<repo>/../shared/libero_assets when it exists) or a LIBERO config with them (docs/libero.md).
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
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))
from libero_setup import libero_defaults  # noqa: E402

libero_defaults()

CAMERAS = ("agentview", "robot0_eye_in_hand")
CHUNK = 8


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------- LIBERO workers
def _worker(conn, suite: str, task_index: int, size: int) -> None:
    """SimpleVLA-RL's env worker: one LIBERO env, a chunk per message, last frames back."""
    warnings.filterwarnings("ignore")
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import make_libero_env

    task = get_task(suite, task_index)
    env = make_libero_env(task, cameras=CAMERAS, height=size, width=size)
    env.seed(0)
    env.reset()
    env.set_init_state(task.init_states()[0])
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        for a in msg:
            obs, _, _, _ = env.step(a)
        conn.send([obs[f"{c}_image"] for c in CAMERAS])
    env.close()


def _bench_libero_workers(suite, task_index, size, workers, chunks, actions) -> float:
    ctx = mp.get_context("fork")  # before this process makes any GL context
    pipes, procs = [], []
    for _ in range(workers):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, suite, task_index, size), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        for c in pipes:
            assert c.recv() == "ready"
        for c in pipes:  # warm-up chunk
            c.send(actions[0])
        for c in pipes:
            c.recv()
        t = time.perf_counter()
        for k in range(chunks):
            for c in pipes:
                c.send(actions[k % len(actions)])
            for c in pipes:
                c.recv()
        elapsed = time.perf_counter() - t
    finally:
        for c in pipes:
            c.send(None)
        for p in procs:
            p.join(timeout=30)
    return workers * chunks / elapsed


# ---------------------------------------------------------------------- native engine
def _bench_native(scene, num_envs, threads, size, chunks, actions, cameras=CAMERAS, cpu=None) -> float:
    """Chunks per second; `cpu` (a list) also gets the process CPU seconds per chunk and env
    (what one core spends on it, whatever else the machine runs)."""
    from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

    eng = LiberoTaskEngine(scene, num_envs, threads, cameras=cameras, height=size, width=size,
                           max_steps=10 ** 6)
    try:
        eng.reset(init_state_ids=np.arange(num_envs) % 50)
        acts = np.broadcast_to(actions[0], (num_envs, CHUNK, 7))
        eng.step(acts)  # warm-up
        t, c = time.perf_counter(), time.process_time()
        for k in range(chunks):
            acts = np.broadcast_to(actions[k % len(actions)], (num_envs, CHUNK, 7))
            eng.step(acts)
        elapsed = time.perf_counter() - t
        if cpu is not None:
            cpu.append((time.process_time() - c) / (num_envs * chunks))
        assert not eng.success.any()
    finally:
        eng.close()
    return num_envs * chunks / elapsed


# ---------------------------------------------------------------------- limit
_RAW_RENDER = r"""
import os, sys, time
os.environ["MUJOCO_GL"] = "egl"; os.environ["PYOPENGL_PLATFORM"] = "egl"
import mujoco
m = mujoco.MjModel.from_binary_path(sys.argv[1]); size = int(sys.argv[2]); reps = int(sys.argv[3])
d = mujoco.MjData(m); mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, size, size)
cams = sys.argv[4:]
for c in cams: r.update_scene(d, c); r.render()
t = time.perf_counter()
for _ in range(reps):
    for c in cams: r.update_scene(d, c); r.render()
print((time.perf_counter() - t) / reps)
"""


def _raw_limit(scene, size, reps) -> tuple[float, float]:
    """(seconds of 200 raw mj_step, seconds of one raw render of each camera)."""
    import mujoco

    from vlarl_fast._native import C

    substeps = int(scene.robosuite_env.control_timestep / scene.robosuite_env.model_timestep)
    data = mujoco.MjData(scene.model)
    scene.robosuite_env.sim.set_state_from_flattened(scene.task.init_states()[0])
    spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
    state = np.empty(mujoco.mj_stateSize(scene.model, spec))
    mujoco.mj_getState(scene.model, scene.data, state, spec)
    del data
    per_step = min(C.time_raw_mj_step(scene.model._address, state, CHUNK * substeps, 2)
                   for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scene.mjb")
        mujoco.mj_saveModel(scene.model, path, None)
        out = subprocess.run([sys.executable, "-c", _RAW_RENDER, path, str(size), str(reps),
                              *CAMERAS], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"raw render failed: {out.stderr[-1000:]}")
        render = float(out.stdout.strip().splitlines()[-1])
    return per_step * CHUNK * substeps, render


# ---------------------------------------------------------------------- report
def run(smoke: bool = False, suite: str = "libero_spatial", task_index: int = 0,
        num_envs: int = 2, size: int | None = None, threads=(1, 2)) -> str:
    warnings.filterwarnings("ignore")
    size = (64 if smoke else 256) if size is None else size
    chunks = 2 if smoke else 6
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, size=(4, CHUNK, 7))
    actions[..., 6] = -1.0
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    rows = []
    worker_counts = (1,) if smoke else (1, 2)
    for w in worker_counts:
        rows.append((f"LIBERO, {w} worker process{'es' if w > 1 else ''} (SimpleVLA-RL)",
                     _bench_libero_workers(suite, task_index, size, w, chunks, actions)))

    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene

    scene = LiberoScene(get_task(suite, task_index))
    for t in threads:
        rows.append((f"native engine, {num_envs} envs, {t} thread{'s' if t > 1 else ''}",
                     _bench_native(scene, num_envs, t, size, chunks, actions)))
    # the engine's per-core rate without rendering: physics, OSC control, LIBERO's success check
    cpu = []
    rows.append((f"native engine, {num_envs} envs, 1 thread, no cameras",
                 _bench_native(scene, num_envs, 1, size, chunks, actions, cameras=(), cpu=cpu)))
    physics, render = _raw_limit(scene, size, 2 if smoke else 5)
    limit = physics + render
    rows.append(("limit: raw mj_step x 200 + raw render per camera", 1.0 / limit))

    base = rows[0][1]
    lines = [
        f"LIBERO chunk throughput: {suite} task {task_index}, chunks of {CHUNK} actions, "
        f"{'+'.join(CAMERAS)} at {size}x{size}, one frame per chunk",
        f"machine: {_cpu_name()}, {cores} cores, load {load:.2f}; mode: "
        f"{'smoke' if smoke else 'full'} ({chunks} timed chunks per env)",
        "",
        f"| {'setup':<58} | chunks/s | ms/chunk/env | vs SimpleVLA-RL | vs limit |",
        f"|{'-' * 60}|---------:|-------------:|----------------:|---------:|",
    ]
    for name, cps in rows:
        lines.append(f"| {name:<58} | {cps:8.2f} | {1e3 / cps:12.1f} | {cps / base:14.2f}x | "
                     f"{(1 / cps) / limit:7.2f}x |")
    lines += ["", f"limit per chunk and env: physics {1e3 * physics:.1f} ms (200 raw mj_step) + "
              f"render {1e3 * render:.1f} ms ({len(CAMERAS)} cameras) = {1e3 * limit:.1f} ms",
              f"engine CPU time per chunk and env without cameras (physics, OSC control, success check; "
              f"process CPU time, so load-independent): {1e3 * cpu[0]:.1f} ms"]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="short run at 64x64, for CI")
    ap.add_argument("--suite", default="libero_spatial")
    ap.add_argument("--task", type=int, default=0)
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--threads", default="1,2", help="engine thread counts, comma separated")
    args = ap.parse_args(argv)
    print(run(args.smoke, args.suite, args.task, args.envs, args.size,
              tuple(int(t) for t in args.threads.split(",") if t)))


if __name__ == "__main__":
    sys.exit(main())
