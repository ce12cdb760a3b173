"""Rendering throughput of the engine against robosuite, mujoco.Renderer and the raw C limit.

Prints, for 2 cameras (agentview, robot0_eye_in_hand) of robosuite's Panda Lift at 256x256
and 224x224, frames per second (medians over repeats, all measured in this run) of:
  * robosuite's own offscreen rendering inside `env.step` (the time a step with camera
    observations costs above the same step without them)
  * `mujoco.Renderer` in a Python loop over N MjData (update_scene + render per frame)
  * the engine's `render()` at 1 and 2 threads
  * the engine with fast=True (MSAA, shadows, reflections off: other pixels), for reference
  * the raw C limit: `mjr_render` + `mjr_readPixels` of one camera in a loop on one thread
and the cost of one 8-action chunk per env: robosuite's 8 rendered `env.step`s against the
engine's `step_chunk` with render="every" and render="end".

    python benchmarks/bench_render.py [--smoke] [--num-envs 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

CAMERAS = ["agentview", "robot0_eye_in_hand"]
CHUNK = 8


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _lift(size: int | None):
    import robosuite
    from robosuite.controllers import load_controller_config

    cams = size is not None
    env = robosuite.make(
        "Lift", robots="Panda", controller_configs=load_controller_config(default_controller="OSC_POSE"),
        has_renderer=False, has_offscreen_renderer=cams,
        use_camera_obs=cams, camera_names=list(CAMERAS), camera_heights=size or 256,
        camera_widths=size or 256, ignore_done=True)
    env.reset()
    return env


def _robosuite_step_seconds(env, actions: np.ndarray, repeats: int) -> float:
    """Median seconds of one env.step (actions cycled)."""
    it = iter(range(10 ** 9))

    def step():
        env.step(actions[next(it) % len(actions)])

    return _median_seconds(step, repeats)


def bench_size(size: int, plain_env, num_envs: int, repeats: int) -> dict:
    import mujoco

    from vlarl_fast import Engine

    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, size=(64, 7))
    rows: dict[str, float] = {}
    per_frame: dict[str, float] = {}

    # robosuite: a step with 2 camera observations minus the same step without them.
    cam_env = _lift(size)
    t_cam = _robosuite_step_seconds(cam_env, actions, repeats)
    t_plain = _robosuite_step_seconds(plain_env, actions, repeats)
    per_frame["robosuite offscreen render in env.step"] = max(t_cam - t_plain, 1e-9) / len(CAMERAS)

    # mujoco.Renderer in a Python loop over num_envs MjData.
    model = plain_env.sim.model._model
    datas = []
    for i in range(num_envs):
        d = mujoco.MjData(model)
        mujoco.mj_setState(model, d, plain_env.sim.get_state().flatten(),
                           mujoco.mjtState.mjSTATE_PHYSICS | mujoco.mjtState.mjSTATE_TIME)
        d.qpos[-7:-5] += 0.02 * i  # move the cube: every env a different scene
        mujoco.mj_forward(model, d)
        datas.append(d)
    option = mujoco.MjvOption()
    option.geomgroup[0], option.geomgroup[1] = 0, 1  # robosuite's scene option
    renderer = mujoco.Renderer(model, size, size, max_geom=1000)

    def python_loop():
        for d in datas:
            for cam in CAMERAS:
                renderer.update_scene(d, camera=cam, scene_option=option)
                renderer.render()

    per_frame["mujoco.Renderer python loop"] = (
        _median_seconds(python_loop, repeats) / (num_envs * len(CAMERAS)))
    renderer.close()

    # The engine: render() of all envs, and chunks.
    chunk = np.tile(actions[:CHUNK][None], (num_envs, 1, 1))
    chunk_rows: dict[str, float] = {}
    raw = None
    for threads in (1, 2):
        with Engine.from_robosuite(plain_env, num_envs, threads, cameras=CAMERAS,
                                   height=size, width=size) as engine:
            engine.forward()
            gl = engine.gl_renderer
            frames = num_envs * len(CAMERAS)
            if threads == 1:
                # Interleaved with the raw C loop on the same worker and context, so that both
                # see the same machine load.
                engine.render()
                native, raw_times = [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    engine.render()
                    native.append((time.perf_counter() - t0) / frames)
                    for cam in range(len(CAMERAS)):
                        raw_times += engine._renderer.time_raw_render(0, cam, 2)
                per_frame["vlarl-fast Engine.render, 1 thread(s)"] = statistics.median(native)
                raw = statistics.median(raw_times)
            else:
                per_frame[f"vlarl-fast Engine.render, {threads} thread(s)"] = (
                    _median_seconds(engine.render, repeats) / frames)
            start = engine.get_state()
            for mode in ("every", "end", "none"):
                def run_chunk(mode=mode):
                    engine.set_state(start)
                    engine.step_chunk(chunk, render=mode)

                chunk_rows[f"engine step_chunk render={mode!r}, {threads} thread(s)"] = (
                    _median_seconds(run_chunk, repeats) / num_envs)
    with Engine(model, num_envs, 1, cameras=CAMERAS, height=size, width=size, fast=True) as fast:
        for i, d in enumerate(datas):
            fast.qpos[i] = d.qpos
        fast.forward()
        per_frame["vlarl-fast Engine.render fast=True, 1 thread"] = (
            _median_seconds(fast.render, repeats) / (num_envs * len(CAMERAS)))
    per_frame["raw C mjr_render + mjr_readPixels (limit)"] = raw
    cam_env.close()
    return {"per_frame": per_frame, "robosuite_step": t_cam, "robosuite_plain_step": t_plain,
            "chunks": chunk_rows, "gl": gl}


def format_table(results: dict, num_envs: int, repeats: int) -> str:
    lines = [f"Rendering, 2 cameras ({', '.join(CAMERAS)}) of robosuite Panda Lift; medians of "
             f"{repeats} repeats; engine with {num_envs} envs; machine: {os.cpu_count()} CPU "
             f"cores, GL: {next(iter(results.values()))['gl']} (EGL)"]
    for size, res in results.items():
        pf = res["per_frame"]
        limit = pf["raw C mjr_render + mjr_readPixels (limit)"]
        robo = pf["robosuite offscreen render in env.step"]
        lines += ["", f"{size}x{size}: frames/s (one frame = one camera of one env)",
                  f"  {'method':<46} {'frames/s':>9} {'ms/frame':>9} {'x robosuite':>11} "
                  f"{'/ limit':>8}"]
        for name, sec in pf.items():
            lines.append(f"  {name:<46} {1 / sec:>9.2f} {1e3 * sec:>9.2f} {robo / sec:>11.2f} "
                         f"{limit / sec:>8.3f}")
        over = pf["vlarl-fast Engine.render, 1 thread(s)"] / limit - 1.0
        lines.append(f"  engine per-frame cost above the raw C limit at 1 thread: {100 * over:+.1f}%")
        robo_chunk = CHUNK * res["robosuite_step"]
        lines += [f"  {CHUNK}-action chunk, per env: {'ms':>9} {'x cheaper than robosuite':>25}",
                  f"    {'robosuite: 8 env.step with 2 cameras':<50} {1e3 * robo_chunk:>9.1f} "
                  f"{1.0:>25.2f}",
                  f"    {'robosuite: 8 env.step without cameras':<50} "
                  f"{1e3 * CHUNK * res['robosuite_plain_step']:>9.1f} "
                  f"{robo_chunk / (CHUNK * res['robosuite_plain_step']):>25.2f}"]
        for name, sec in res["chunks"].items():
            lines.append(f"    {name:<50} {1e3 * sec:>9.1f} {robo_chunk / sec:>25.2f}")
    return "\n".join(lines)


def run(smoke: bool = False, num_envs: int = 4) -> str:
    """Runs the benchmark and returns the table (smoke: 64x64 only, 2 envs, 1 repeat after the
    warm-up: llvmpipe renders even 64x64 frames at ~5-10 per second)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    sizes = (64,) if smoke else (256, 224)
    repeats = 1 if smoke else 5
    if smoke:
        num_envs = 2
    plain_env = _lift(None)
    results = {size: bench_size(size, plain_env, num_envs, repeats) for size in sizes}
    return format_table(results, num_envs, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="64x64, 2 envs, 1 repeat")
    parser.add_argument("--num-envs", type=int, default=4)
    args = parser.parse_args()
    print(run(args.smoke, args.num_envs))


if __name__ == "__main__":
    main()
