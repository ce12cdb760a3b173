"""vlarl_fast.kernels' native CPU kernels live in their own module, `vlarl_fast._cpu_kernels`
(csrc/kernels/), which needs neither MuJoCo nor the physics core, and run on a persistent thread
pool that survives fork()."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import vlarl_fast
from vlarl_fast.kernels import _native_loader

PACKAGE_DIR = Path(vlarl_fast.__file__).parent
BUILT = any(PACKAGE_DIR.glob("_C.*.so"))  # scripts/setup.sh builds both modules together

# A child process in which the physics side cannot be imported at all.
_NO_PHYSICS = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mujoco" or name.startswith("mujoco.") or name in ("vlarl_fast._C", "vlarl_fast._native"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
import torch
import vlarl_fast.kernels as K
from vlarl_fast.kernels import _native_loader, cpu_native

torch.manual_seed(0)
h = torch.randn(6, 32, dtype=torch.float64, requires_grad=True)
w = torch.randn(40, 32, dtype=torch.float64)
y = torch.randint(0, 8, (6,))
logp = K.action_logprob(h, w, y, temperature=1.3, bin_start=30, bin_end=38, backend="torch")
ref = torch.log_softmax((h @ w[30:38].T) / 1.3, dim=-1).gather(1, y[:, None])[:, 0]
logp.sum().backward()
module = _native_loader.load()
print(json.dumps({
    "max_err": float((logp - ref).abs().max()),
    "grad": bool(h.grad is not None and torch.isfinite(h.grad).all()),
    "module": None if module is None else module.__name__,
    "reason": _native_loader.unavailable_reason(),
    "native_available": cpu_native.native_bf16_available(),
    "bf16_supported": None if module is None else bool(module.bf16_kernels_supported()),
    "physics_loaded": sorted(m for m in sys.modules
                             if m == "mujoco" or m.startswith("mujoco.") or m in ("vlarl_fast._C", "vlarl_fast._native")),
}))
"""


def test_kernels_import_and_run_without_the_physics_module():
    proc = subprocess.run([sys.executable, "-c", _NO_PHYSICS], capture_output=True, text=True, timeout=120,
                          cwd=str(PACKAGE_DIR.parent), env=dict(os.environ, VLARL_CPU_NATIVE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["physics_loaded"] == []
    assert got["max_err"] < 1e-12 and got["grad"]
    if BUILT:
        assert got["module"] == _native_loader.MODULE, got["reason"]
        # the kernels themselves run where the CPU has AVX512-BF16
        assert got["native_available"] == got["bf16_supported"]
    else:
        assert got["module"] is None and "could not be imported" in got["reason"]


needs_module = pytest.mark.skipif(not BUILT, reason="the native modules are not built (scripts/setup.sh)")


@needs_module
def test_kernel_module_does_not_link_mujoco():
    (path,) = PACKAGE_DIR.glob("_cpu_kernels.*.so")
    assert b"libmujoco" not in path.read_bytes()
    (core,) = PACKAGE_DIR.glob("_C.*.so")
    assert b"libmujoco" in core.read_bytes()  # the check above can see a dependency


@needs_module
def test_task_runner_uses_at_most_the_requested_threads():
    C = _native_loader.load()
    for threads in (1, 2, 3, 8):
        used = C._task_runner_check(1000, threads)
        assert 1 <= used <= threads
    assert C._kernel_pool_size() >= 8  # one persistent pool, grown to the largest request
    assert C._task_runner_check(0, 4) == 0


@needs_module
def test_task_runner_works_in_a_forked_child():
    C = _native_loader.load()
    assert C._task_runner_check(256, 4) >= 1  # the parent's pool has threads now
    pid = os.fork()
    if pid == 0:  # the child: the parent's workers do not exist here
        signal.alarm(30)
        code = 1
        try:
            code = 0 if 1 <= C._task_runner_check(256, 4) <= 4 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert C._task_runner_check(256, 4) >= 1
