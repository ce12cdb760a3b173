"""Control steps per second without rendering: robosuite vs the native engine vs raw physics.

Measured in one run, on one robosuite scene (default Lift, Panda, OSC_POSE, 20 Hz control with
25 physics substeps), all from the same start states with uniform random actions:

  robosuite env.step, 1 process        robosuite's own loop (controller + observables in Python)
  robosuite, W worker processes        one process per env fed through multiprocessing Pipes,
                                       a chunk of K actions per message, as SimpleVLA-RL's
                                       rollout workers run LIBERO (W = number of cores)
  native engine, 1 / 2 threads         Engine.step_chunk, N envs x K steps per call
  physics limit, 1 / 2 threads         substeps x raw mj_step per control step (Engine.step,
                                       no controller) replaying the controller's torques (held
                                       per control step): same envs, trajectory, thread counts

Usage: python benchmarks/bench_control.py [--smoke] [--scene Lift] [--envs 8] [--chunk 8]
`run(smoke)` returns the printed table (the `vlarl-fast bench control` CLI calls it).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_env(scene: str):
    import logging

    import robosuite as suite

    logging.getLogger("robosuite").setLevel(logging.ERROR)
    env = suite.make(
        scene, robots="Panda",
        controller_configs=suite.load_controller_config(default_controller="OSC_POSE"),
        has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
        ignore_done=True, hard_reset=False)
    env.reset()
    return env


def _worker(conn, scene: str) -> None:
    """One robosuite env in its own process: ("state", flat) -> reset there; ("chunk", [K, 7])
    -> K env.steps, replies with the last observation's proprio (as a policy would read)."""
    warnings.filterwarnings("ignore")
    env = make_env(scene)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        kind, payload = msg
        if kind == "state":
            env.sim.set_state_from_flattened(payload)
            env.sim.forward()
            conn.send(True)
        else:
            obs = None
            for a in payload:
                obs, _, _, _ = env.step(a)
            conn.send((obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"]))
    conn.close()


def _proc_cpu_seconds(pids) -> float:
    """CPU seconds (user + system) used so far by other processes (Linux /proc)."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _median_rate(fn, steps_per_call: int, repeats: int, warmup: bool = True, pids=()):
    """Medians over `repeats` timed calls of fn (after one warm-up call) of control steps per
    wall-clock second and per CPU second (this process's threads plus processes `pids`): the
    second is what one core delivers, whatever else the machine runs."""
    if warmup:
        fn()
    rates, cpu_rates = [], []
    for _ in range(repeats):
        c = time.process_time() + _proc_cpu_seconds(pids)
        t = time.perf_counter()
        fn()
        rates.append(steps_per_call / (time.perf_counter() - t))
        cpu = time.process_time() + _proc_cpu_seconds(pids) - c
        cpu_rates.append(steps_per_call / max(cpu, 1e-9))
    return statistics.median(rates), statistics.median(cpu_rates)


def bench_robosuite(env, state, actions, repeats: int):
    def call():
        env.sim.set_state_from_flattened(state)
        env.sim.forward()
        for a in actions:
            env.step(a)
    return _median_rate(call, len(actions), repeats)


def bench_multiprocess(scene: str, workers: int, state, actions, repeats: int):
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    for _ in range(workers):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, scene), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        for c in pipes:
            assert c.recv() == "ready"
        k = actions.shape[1]

        def call():
            for c in pipes:
                c.send(("state", state))
            for c in pipes:
                c.recv()
            for chunk_actions in actions:
                for c in pipes:
                    c.send(("chunk", chunk_actions))
                for c in pipes:
                    c.recv()
        return _median_rate(call, workers * actions.shape[0] * k, repeats,
                            pids=[p.pid for p in procs])
    finally:
        for c in pipes:
            c.send(None)
        for p in procs:
            p.join(timeout=10)


def bench_native(env, n: int, threads: int, state, actions, repeats: int):
    """(native rate, physics-limit rate), timed alternately so both see the same machine load.

    The physics limit replays, with raw mj_step and no controller, the torques the controller
    produced (held per control step), so it follows the same trajectory and contacts."""
    from vlarl_fast import Engine

    with Engine.from_robosuite(env, n, threads) as engine:
        substeps = engine.spec.substeps
        engine.set_state(state)
        ctrls = []
        for c in actions:
            for k in range(c.shape[1]):
                engine.step_chunk(c[:, k], render="none")
                ctrls.append(engine.ctrl.copy())
        steps = n * len(ctrls)

        def chunk():
            engine.set_state(state)
            for c in actions:
                engine.step_chunk(c, render="none")

        def physics():
            engine.set_state(state)
            for ctrl in ctrls:
                engine.step(ctrl, nstep=substeps)

        chunk(), physics()
        native, limit = [], []
        for _ in range(repeats):
            native.append(_median_rate(chunk, steps, 1, warmup=False))
            limit.append(_median_rate(physics, steps, 1, warmup=False))
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    return (med(native, 0), med(native, 1)), (med(limit, 0), med(limit, 1))


def run(smoke: bool = False, scene: str = "Lift", num_envs: int = 8, chunk: int = 8) -> str:
    warnings.filterwarnings("ignore")
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(cores, 2 if smoke else cores))
    chunks = 2 if smoke else 4  # chunks per timed call
    repeats = 2 if smoke else 7
    rng = np.random.default_rng(0)
    env = make_env(scene)
    state = env.sim.get_state().flatten()
    substeps = int(env.control_timestep / env.model_timestep)

    rs_actions = rng.uniform(-1, 1, size=(chunks * chunk, 7))
    rs = bench_robosuite(env, state, rs_actions, repeats)
    mp_actions = rng.uniform(-1, 1, size=(chunks, chunk, 7))
    mp_rate = bench_multiprocess(scene, workers, state, mp_actions, repeats)
    native_actions = rng.uniform(-1, 1, size=(chunks, num_envs, chunk, 7))
    rows = [("robosuite env.step, 1 process", rs, 1),
            (f"robosuite, {workers} worker processes (Pipes)", mp_rate, workers)]
    limits = {}
    for threads in (1, 2):
        native, limit = bench_native(env, num_envs, threads, state, native_actions, repeats)
        rows.append((f"native engine, {threads} thread{'s' * (threads > 1)}", native, threads))
        limits[threads] = (native, limit)
    for threads in (1, 2):
        rows.append((f"physics limit ({substeps} x mj_step), {threads} thread"
                     f"{'s' * (threads > 1)}", limits[threads][1], threads))

    lines = [
        f"bench control: {scene}, Panda OSC_POSE, {substeps} substeps per control step, "
        f"K={chunk}, N={num_envs} envs (native), {chunks} chunks x {repeats} repeats (median)"
        f"{', SMOKE' if smoke else ''}",
        f"machine: {_cpu_name()}, {cores} cores available, load average before "
        f"{load:.1f}, python {platform.python_version()}",
        "control steps per second: wall clock (all cores used), per core (wall / cores used),"
        " per CPU second (CPU time of all threads and worker processes)",
        f"{'':44s}{'wall':>9s}{'per core':>10s}{'per CPU-s':>11s}{'x robosuite':>13s}",
    ]
    base = rs[1]
    for name, (wall, cpu), used in rows:
        lines.append(f"{name:44s}{wall:9.1f}{wall / used:10.1f}{cpu:11.1f}{cpu / base:12.1f}x")
    lines.append("(x robosuite: per CPU second, relative to robosuite env.step in 1 process)")
    for threads in (1, 2):
        (nw, nc), (lw, lc) = limits[threads]
        lines.append(f"native / physics limit, {threads} thread{'s' * (threads > 1)}: "
                     f"{nw / lw:.3f} (wall), {nc / lc:.3f} (per CPU second)")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="short run (seconds), for CI")
    ap.add_argument("--scene", default="Lift")
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=8)
    args = ap.parse_args(argv)
    print(run(args.smoke, args.scene, args.envs, args.chunk))


if __name__ == "__main__":
    sys.exit(main())
