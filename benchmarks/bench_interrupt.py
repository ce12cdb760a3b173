"""Lifetime and interrupt figures of the engine (docs/engine.md, "Lifetime, threads and
interrupts"):

- SIGINT -> KeyboardInterrupt latency during a long `step`, `step_chunk` and `render` on the
  main thread (the signal is sent by a timer thread with pthread_kill);
- how long `close()` from another thread takes while a 10**7-step call runs;
- the cost of one short call (the call lock, the GIL hand-off), in microseconds.

    python benchmarks/bench_interrupt.py [--trials 15] [--no-robosuite]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from vlarl_fast import Engine  # noqa: E402
from vlarl_fast.engine import EngineClosedError  # noqa: E402
from vlarl_fast.envs.scenes import contact_pile_xml  # noqa: E402

CAMERA_XML = """
<mujoco>
  <visual><quality shadowsize="0" offsamples="0"/></visual>
  <default><geom group="1"/></default>
  <worldbody>
    <light pos="0 0 2"/>
    <geom type="plane" size="1 1 .1" rgba=".8 .8 .8 1"/>
    <body name="box" pos="0 0 .2"><freejoint/><geom type="box" size=".05 .05 .05"/></body>
    <camera name="front" pos="0 -1 .5" xyaxes="1 0 0 0 .5 1"/>
    <camera name="top" pos="0 0 1.5"/>
  </worldbody>
</mujoco>
"""


def _interrupt_latency(call, trials: int, rng) -> list[float]:
    """Seconds from pthread_kill(main, SIGINT) to the KeyboardInterrupt out of call()."""
    out = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for _ in range(trials):
            sent = {}

            def fire():
                sent["t"] = time.perf_counter()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

            timer = threading.Timer(rng.uniform(0.05, 0.15), fire)
            timer.start()
            try:
                call()
                raise SystemExit("the call ended before the signal: make it longer")
            except KeyboardInterrupt:
                out.append(time.perf_counter() - sent["t"])
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    return out


def _close_latency(make, call, trials: int, rng) -> list[float]:
    out = []
    for _ in range(trials):
        engine = make()
        ended = []
        thread = threading.Thread(target=lambda: _run_until_closed(engine, call, ended))
        thread.start()
        time.sleep(rng.uniform(0.02, 0.06))
        t0 = time.perf_counter()
        engine.close()
        out.append(time.perf_counter() - t0)
        thread.join()
        assert ended and isinstance(ended[0], EngineClosedError), ended
    return out


def _run_until_closed(engine, call, ended):
    try:
        while True:
            call(engine)
    except EngineClosedError as exc:
        ended.append(exc)


def _us_per_call(fn, seconds: float = 0.5) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - t0) / n * 1e6


def _row(name: str, values: list[float], unit: float = 1e3, suffix: str = "ms") -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return (f"  {name:<52} median {statistics.median(values) * unit:8.2f} {suffix}   "
            f"p90 {p90 * unit:8.2f} {suffix}   max {values[-1] * unit:8.2f} {suffix}   "
            f"(n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--no-robosuite", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pile = mujoco.MjModel.from_xml_string(contact_pile_xml(24))
    cam = mujoco.MjModel.from_xml_string(CAMERA_XML)

    print(f"machine: {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.2f} at the start")
    print("SIGINT -> KeyboardInterrupt on the main thread:")
    with Engine(pile, 4, 2) as engine:
        lat = _interrupt_latency(lambda: engine.step(nstep=50_000_000), args.trials, rng)
        print(_row("step(nstep=5e7), contact pile, 4 envs, 2 threads", lat))
    if not args.no_robosuite:
        import robosuite

        env = robosuite.make(
            "Lift", robots="Panda",
            controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
            ignore_done=True)
        env.reset()
        with Engine.from_robosuite(env, 2, 2) as engine:
            actions = np.zeros((2, 4000, 7))
            lat = _interrupt_latency(lambda: engine.step_chunk(actions), args.trials, rng)
            print(_row("step_chunk(K=4000), Panda Lift, 2 envs, 2 threads", lat))
    with Engine(cam, 48, 2, cameras=["front", "top"], height=48, width=48) as engine:
        engine.forward()

        def render_loop():
            while True:
                engine.render()

        lat = _interrupt_latency(render_loop, args.trials, rng)
        print(_row("render() loop, 48 envs x 2 cameras 48x48, 2 threads", lat))

    print("close() from the main thread while another thread is inside a call:")
    durations = _close_latency(lambda: Engine(pile, 4, 2),
                               lambda e: e.step(nstep=10_000_000), args.trials, rng)
    print(_row("during step(nstep=1e7), 4 envs, 2 threads", durations))
    durations = _close_latency(
        lambda: Engine(cam, 8, 2, cameras=["front"], height=48, width=48),
        lambda e: e.render(), max(3, args.trials // 3), rng)
    print(_row("during render(), 8 envs, 2 threads", durations))

    print("one short call (call lock + GIL released and taken back):")
    with Engine(pile, 1, 1) as engine:
        state = engine.get_state()
        for name, fn in (("step(nstep=0), 1 env", lambda: engine.step(nstep=0)),
                         ("get_state(), 1 env", engine.get_state),
                         ("set_state(state), 1 env", lambda: engine.set_state(state))):
            us = [_us_per_call(fn, 0.3) for _ in range(5)]
            print(_row(name, [u / 1e6 for u in us], unit=1e6, suffix="us"))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
