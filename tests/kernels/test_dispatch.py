"""Backend selection: VLARL_KERNEL_BACKEND, explicit backends that cannot run raise."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import HAS_CUDA, requires_triton
from vlarl_fast.kernels import action_logprob, select_backend
from vlarl_fast.kernels import dispatch


def test_auto_picks_torch_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv(dispatch.BACKEND_ENV_VAR, raising=False)
    x = torch.zeros(2)
    assert select_backend("op", [x]) == ("triton" if HAS_CUDA and dispatch.triton_available() and x.is_cuda else "torch")
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "torch")
    assert select_backend("op", [x]) == "torch"


def test_bad_backend_name_raises(monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=dispatch.BACKEND_ENV_VAR):
        select_backend("op", [torch.zeros(1)])


@requires_triton
def test_explicit_triton_that_cannot_run_raises(monkeypatch):
    hidden, weight = torch.randn(3, 4), torch.randn(3000, 4)
    labels = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="n_bins"):  # too many bins for one tile
        action_logprob(hidden, weight, labels, temperature=1.0, bin_start=0, bin_end=2000,
                       backend="triton")
    # auto falls back to torch for the same call
    out = action_logprob(hidden, weight, labels, temperature=1.0, bin_start=0, bin_end=2000,
                         backend="auto")
    assert out.shape == (3,) and torch.isfinite(out).all()
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="CUDA"):
            select_backend("op", [hidden], backend="triton")


@requires_triton
def test_env_var_routes_to_triton_and_torch_identically(monkeypatch):
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(5, 8, generator=g), torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 16, (5,), generator=g)
    device = "cuda" if HAS_CUDA else "cpu"
    results = {}
    for backend in ("torch", "triton"):
        monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, backend)
        results[backend] = action_logprob(hidden.to(device), weight.to(device), labels.to(device),
                                          temperature=1.6, bin_start=10, bin_end=26).cpu()
    assert torch.allclose(results["torch"], results["triton"], rtol=1e-5, atol=1e-5)


def test_package_imports_and_runs_without_triton():
    """With triton unimportable the kernels package still imports, auto runs PyTorch, and an
    explicit triton request raises."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = """
import sys
sys.modules["triton"] = None  # makes `import triton` raise ImportError
import vlarl_fast.kernels as k
import torch
assert not k.triton_available()
h, w, y = torch.randn(4, 8), torch.randn(20, 8), torch.zeros(4, dtype=torch.long)
print(k.action_logprob(h, w, y, temperature=1.6, bin_start=2, bin_end=10).shape)
loss, _ = k.grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2, 3),
                      clip_low=0.2, clip_high=0.28)
print(float(loss))
try:
    k.action_logprob(h, w, y, temperature=1.6, bin_start=2, bin_end=10, backend="triton")
except RuntimeError as err:
    print("raised:", err)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "torch.Size([4])"
    assert float(lines[1]) == -1.0  # ratio 1, advantage 1: loss = -1
    assert lines[2].startswith("raised:") and "triton is not installed" in lines[2]
