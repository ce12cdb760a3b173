"""scripts/gpu_check.sh (the one prepared script a lent GPU machine runs) parses, and on a machine
without CUDA reports every GPU step as skipped and still writes its summary and tables quickly;
its Python steps say "skipped: no CUDA" (exit 3) instead of failing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["nvidia-smi", "bundle", "build_cuda", "env", "tests_gpu", "tests_cpu", "tests_native", "egl",
         "fsdp_nccl", "grpo_libero", "bench_libero", "bench_render", "bench_kernels", "bench_policy",
         "bench_pipeline"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_check.sh")], check=True)
    for name in ("gpu_check.py", "gpu_check_native.py", "gpu_check_bundle.py"):
        subprocess.run([sys.executable, "-m", "py_compile", str(REPO / "scripts" / name)], check=True)


@pytest.mark.skipif(_cuda(), reason="checks the CPU fallback")
def test_cpu_mode_skips_gpu_steps_and_writes_its_files(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, GPU_CHECK_SKIP="env",
               PATH="/usr/bin:/bin")  # no nvidia-smi, no nvcc: a CPU machine
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=120)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    assert (out / "tables.txt").is_file() and (out / "gpu_check.log").is_file()
    lines = summary.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("step ")) + 1:]
    rows = {line.split()[0]: line for line in table if line.strip()}
    assert list(rows)[: len(STEPS)] == STEPS
    for step in STEPS[1:]:
        if step != "env":
            assert "SKIPPED" in rows[step] and "no CUDA" in rows[step], rows[step]
    assert wall < 90, f"the CPU fallback took {wall:.0f} s"


@pytest.mark.skipif(_cuda(), reason="checks the CPU fallback")
@pytest.mark.parametrize("what", ["fsdp", "grpo"])
def test_native_steps_say_skipped_without_cuda(what):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_native.py"), what],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "skipped: no CUDA" in proc.stdout


def _array(script: str, name: str) -> list[str]:
    """The words of a bash array assignment `name=( ... )` in the script (it may span lines)."""
    match = re.search(rf"\b{name}=\(([^)]*)\)", script)
    assert match, f"gpu_check.sh no longer assigns {name}"
    return [w for w in match.group(1).split() if w.startswith("tests")]


def test_every_cuda_test_file_runs_where_the_script_shows_it_the_card():
    """A test with CUDA cases runs nowhere but on the lent machine: the script must name it (its
    file, or a folder above it) in a pytest step that sees the GPU (tests_gpu or tests_native;
    tests_cpu hides CUDA)."""
    script = (REPO / "scripts" / "gpu_check.sh").read_text()
    named = _array(script, "GPU_TESTS") + _array(script, "NATIVE_TESTS")
    cuda_cases = re.compile(r"requires_cuda|cuda_available\(\)|cuda\.is_available\(\)|Generator\(\"cuda\"\)")
    files = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "tests").rglob("test_*.py"))
             if p.name != Path(__file__).name and cuda_cases.search(p.read_text())]
    assert "tests/rl/test_device_replica.py" in files, files  # the pattern still finds them
    missing = [f for f in files if not any(f == n or f.startswith(n.rstrip("/") + "/") for n in named)]
    assert not missing, f"tests with CUDA cases that scripts/gpu_check.sh never runs on the card: {missing}"
