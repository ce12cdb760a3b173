"""The control benchmark runs end to end (smoke size) and reports every row it promises."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_control  # noqa: E402


def test_bench_control_smoke():
    table = bench_control.run(smoke=True)
    for row in ("robosuite env.step, 1 process", "worker processes (Pipes)",
                "native engine, 1 thread", "native engine, 2 threads",
                "physics limit (25 x mj_step), 1 thread", "native / physics limit, 2 threads"):
        assert row in table, row
    native = next(l for l in table.splitlines() if l.startswith("native engine, 1 thread"))
    robosuite = next(l for l in table.splitlines() if l.startswith("robosuite env.step"))
    # per CPU second: the native engine beats robosuite's own loop by a wide margin
    assert float(native.split()[-2]) > 3 * float(robosuite.split()[-2])
