"""Physics throughput of the batched engine against its baselines and the raw C limit.

Prints, for a robosuite scene (Panda Lift, built by robosuite) and a contact-rich scene,
physics steps per second of:
  * raw C `mj_step` on one thread (the limit, per core)
  * a Python loop of `mujoco.mj_step` over N `MjData`
  * `mujoco.rollout` (1 thread, and one thread per core with one MjData each)
  * the engine at 1 and 2 threads
and the engine's overhead above the raw limit at 1 thread. Medians over repeats.

    python benchmarks/bench_engine.py [--smoke] [--num-envs 8] [--nstep 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import mujoco
import numpy as np

from vlarl_fast import Engine
from vlarl_fast._native import C
from vlarl_fast.engine.engine import FULL_STATE_SPEC
from vlarl_fast.envs.scenes import contact_pile_xml


def _robosuite_lift() -> mujoco.MjModel:
    import robosuite

    env = robosuite.make("Lift", robots="Panda", has_renderer=False,
                         has_offscreen_renderer=False, use_camera_obs=False, ignore_done=True)
    env.reset()
    return env.sim.model._model


def _settled_state(model: mujoco.MjModel, steps: int) -> np.ndarray:
    d = mujoco.MjData(model)
    for _ in range(steps):
        mujoco.mj_step(model, d)
    state = np.empty(mujoco.mj_stateSize(model, FULL_STATE_SPEC))
    mujoco.mj_getState(model, d, state, FULL_STATE_SPEC)
    return state


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_scene(model: mujoco.MjModel, num_envs: int, nstep: int, repeats: int):
    """Steps/s per method. Methods are timed in interleaved rounds (one call of each per round),
    so that load changes on a shared machine hit every method alike; medians over rounds."""
    state = _settled_state(model, 200)  # a typical, contact-carrying state
    total = num_envs * nstep
    datas = [mujoco.MjData(model) for _ in range(num_envs)]

    def python_loop():
        for d in datas:
            mujoco.mj_setState(model, d, state, FULL_STATE_SPEC)
            for _ in range(nstep):
                mujoco.mj_step(model, d)

    timers = {
        # C++ times only its mj_step calls: already seconds per step
        "raw C mj_step, 1 thread (limit)":
            lambda: C.time_raw_mj_step(model._address, state, nstep, num_envs) * total,
        "python mujoco.mj_step loop": lambda: _time(python_loop),
    }
    try:
        from mujoco import rollout

        physics = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
        d0 = mujoco.MjData(model)
        mujoco.mj_setState(model, d0, state, FULL_STATE_SPEC)
        init_row = np.empty(mujoco.mj_stateSize(model, physics))
        mujoco.mj_getState(model, d0, init_row, physics)
        init = np.tile(init_row, (num_envs, 1))
        ctrl = np.zeros((num_envs, nstep, model.nu))
        for threads in (1, 2):
            ds = [mujoco.MjData(model) for _ in range(threads)]
            timers[f"mujoco.rollout, {threads} thread(s)"] = (
                lambda ds=ds: _time(lambda: rollout.rollout(model, ds, init, ctrl)))
    except Exception as exc:  # pragma: no cover - depends on the mujoco release
        print(f"mujoco.rollout unavailable: {exc}")

    engines = [Engine(model, num_envs, threads) for threads in (1, 2)]
    for engine in engines:
        def step(engine=engine):
            engine.set_state(state)
            engine.step(None, nstep)

        timers[f"vlarl-fast Engine, {engine.num_threads} thread(s)"] = (
            lambda step=step: _time(step))

    samples = {name: [] for name in timers}
    for fn in timers.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in timers.items():
            samples[name].append(fn())
    for engine in engines:
        engine.close()
    limit = samples["raw C mj_step, 1 thread (limit)"]
    ratio = [e / r for e, r in zip(samples["vlarl-fast Engine, 1 thread(s)"], limit)]
    rates = {name: total / statistics.median(t) for name, t in samples.items()}
    return rates, statistics.median(ratio) - 1.0


def format_table(results: dict, num_envs: int, nstep: int) -> str:
    load = os.getloadavg()[0]
    lines = [f"Physics steps/s (median), {num_envs} envs x {nstep} mj_step per call, "
             f"machine: {os.cpu_count()} CPU cores, load average {load:.2f} at the end"]
    for scene, (rows, overhead) in results.items():
        limit = rows["raw C mj_step, 1 thread (limit)"]
        python = rows["python mujoco.mj_step loop"]
        lines.append("")
        lines.append(f"scene: {scene}")
        lines.append(f"  {'method':<38} {'steps/s':>12} {'x python':>9} {'/ limit':>8}")
        for method, rate in rows.items():
            lines.append(f"  {method:<38} {rate:>12,.0f} {rate / python:>9.2f} {rate / limit:>8.3f}")
        lines.append(f"  engine overhead above the raw limit at 1 thread (median of per-round "
                     f"ratios): {100 * overhead:+.1f}%")
    return "\n".join(lines)


def run(smoke: bool = False, num_envs: int = 8, nstep: int = 25) -> str:
    repeats = 3 if smoke else 30
    if smoke:
        num_envs, nstep = 4, 10
    results = {
        "robosuite Panda Lift": bench_scene(_robosuite_lift(), num_envs, nstep, repeats),
        "contact pile (24 objects)": bench_scene(
            mujoco.MjModel.from_xml_string(contact_pile_xml(24)), num_envs, nstep, repeats),
    }
    return format_table(results, num_envs, nstep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few repeats")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--nstep", type=int, default=25)
    args = parser.parse_args()
    print(run(args.smoke, args.num_envs, args.nstep))


if __name__ == "__main__":
    main()
