"""Every `vlarl-fast bench <name> --smoke` finishes within a bounded time and says which code path
ran (the LIBERO ones are in tests/libero/test_bench_libero_smoke.py). Each runs as the CLI, in its
own process, with a timeout: a benchmark that hangs or whose baseline never finishes on this CPU
(issue 18: `bench kernels` did not finish its first case in 9 minutes on a CPU without AVX512)
fails here instead of in a user's terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# name -> (timeout s, strings the output must contain: the rows / paths that ran)
BENCHES = {
    "engine": (120, ["vlarl-fast Engine, 1 thread(s)", "raw C mj_step, 1 thread (limit)"]),
    "control": (150, ["native engine, 1 thread", "robosuite env.step, 1 process"]),
    "render": (240, ["GL: ", "vlarl-fast Engine.render, 1 thread(s)", "robosuite offscreen render"]),
    "kernels": (150, ["CPU ", "torch ATen ", "baseline: simplevla in ", "code path of each method:",
                      "fused "]),
    "policy": (150, ["paths: tiny preset, model ", "action log-prob: ", "GRPO loss: "]),
    "grpo": (300, ["paths: vlarl-fast model ", "action log-prob: ", "baseline: full-vocabulary logits"]),
}


def run_bench(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl", PYTHONUNBUFFERED="1")
    env.pop("TRITON_INTERPRET", None)  # the benchmarks run what a user runs
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "vlarl_fast.cli", "--debug", "bench", *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"`vlarl-fast bench {' '.join(args)}` did not finish in {timeout} s; output so far:\n"
                    f"{(out or '')[-3000:]}")
    return proc, time.perf_counter() - t0


def check_output(proc: subprocess.CompletedProcess, args: tuple[str, ...], markers: list[str]) -> None:
    assert proc.returncode == 0, (f"`vlarl-fast bench {' '.join(args)}` exited {proc.returncode}:\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    for marker in markers:
        assert marker in proc.stdout, f"{marker!r} missing from `bench {' '.join(args)}`:\n{proc.stdout}"


def check_kernels_table(table: str) -> None:
    """On a CPU whose torch bf16 matmuls are emulated the baseline is fp32 and fused also runs on
    bf16 inputs; elsewhere the baseline is bf16. Either way every row was measured (not skipped
    or timed out)."""
    baseline = next(line for line in table.splitlines() if line.startswith("baseline: "))
    rows = [line.split() for line in table.splitlines() if " tok " in line]
    methods = {" ".join(r[2:4]) for r in rows}
    if "emulated" in baseline:
        assert baseline.startswith("baseline: simplevla in float32"), baseline
        assert methods == {"simplevla fp32", "fused fp32", "fused bf16", "bound fp32"}, table
    else:
        assert baseline.startswith("baseline: simplevla in bfloat16"), baseline
        assert methods == {"simplevla bf16", "fused bf16", "bound bf16"}, table
    for r in rows:
        float(r[4])  # fwd ms


EXTRA_CHECKS = {"kernels": check_kernels_table}


@pytest.mark.parametrize("name", list(BENCHES))
def test_bench_smoke_finishes_and_names_its_paths(name):
    timeout, markers = BENCHES[name]
    args = (name, "--smoke")
    proc, wall = run_bench(*args, timeout=timeout)
    check_output(proc, args, markers)
    if name in EXTRA_CHECKS:
        EXTRA_CHECKS[name](proc.stdout)
    print(f"bench {name} --smoke: {wall:.0f} s")
