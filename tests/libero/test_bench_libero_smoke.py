"""`vlarl-fast bench libero --smoke` and `vlarl-fast bench grpo --suite libero_spatial --smoke` finish
within a bounded time and say what ran (the other benchmarks: tests/test_benchmarks_smoke.py). They
need LIBERO's assets ($VLARL_LIBERO_ASSETS, set by this folder's conftest to ../shared/libero_assets
by default) and get this session's LIBERO config (LIBERO_CONFIG_PATH, also from the conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_benchmarks_smoke import check_output, run_bench

ASSETS = Path(os.environ.get("VLARL_LIBERO_ASSETS", ""))
pytestmark = pytest.mark.skipif(
    not (ASSETS / "scenes").is_dir(),
    reason=f"LIBERO assets not found at {ASSETS} (set VLARL_LIBERO_ASSETS; see docs/libero.md)")

CASES = {
    "libero": ((("libero", "--smoke"), 300),
               ["LIBERO, 1 worker process (SimpleVLA-RL)", "native engine, 2 envs, 1 thread",
                "limit: raw mj_step"]),
    "grpo-libero": ((("grpo", "--suite", "libero_spatial", "--smoke"), 360),
                    ["GRPO iteration on libero_spatial", "paths: vlarl-fast model ", "action log-prob: "]),
    "rollout-pipeline": ((("rollout_pipeline", "--smoke"), 420),
                         ["tiny   lockstep", "tiny   pipelined", "device pipelined", "mixed-task pool",
                          "per-task engines", "episode start"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_libero_bench_smoke_finishes_and_names_its_paths(case):
    (args, timeout), markers = CASES[case]
    proc, wall = run_bench(*args, timeout=timeout)
    check_output(proc, args, markers)
    print(f"bench {' '.join(args)}: {wall:.0f} s")
