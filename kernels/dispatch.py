"""Backend choice for the fused ops: Triton on CUDA tensors, PyTorch otherwise.

`VLARL_KERNEL_BACKEND` (read at every call) selects:
  auto    (default) Triton when it is installed and every tensor is on a CUDA device, else PyTorch
  triton  always Triton; raises if Triton is missing or the tensors cannot run under it (CPU
          tensors run only under the interpreter, `TRITON_INTERPRET=1`)
  torch   always the PyTorch implementation
An explicit `backend=` argument of an op overrides the variable.
"""

from __future__ import annotations

import os

import torch

BACKEND_ENV_VAR = "VLARL_KERNEL_BACKEND"
BACKENDS = ("auto", "triton", "torch")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument if given, else the environment variable, else auto."""
    choice = backend if backend is not None else os.environ.get(BACKEND_ENV_VAR, "auto")
    choice = choice.strip().lower()
    if choice not in BACKENDS:
        source = "backend argument" if backend is not None else BACKEND_ENV_VAR
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    return choice


def select_backend(op: str, tensors: list[torch.Tensor], backend: str | None = None,
                   triton_supports: bool = True, unsupported_reason: str = "") -> str:
    """Returns "triton" or "torch" for `op` on `tensors`.

    `triton_supports=False` (with a reason) says the Triton kernel cannot take this call (for
    instance too many bins); auto then falls back to PyTorch and an explicit triton raises.
    """
    choice = requested_backend(backend)
    if choice == "torch":
        return "torch"
    on_cuda = all(t.is_cuda for t in tensors)
    if choice == "auto":
        if on_cuda and triton_supports and triton_available():
            return "triton"
        return "torch"
    # explicit triton: every obstacle is an error
    if not triton_available():
        raise RuntimeError(f"{op}: backend 'triton' requested but triton is not installed")
    if not triton_supports:
        raise ValueError(f"{op}: backend 'triton' cannot run this call: {unsupported_reason}")
    if not on_cuda and not triton_interpreting():
        devices = sorted({str(t.device) for t in tensors})
        raise RuntimeError(
            f"{op}: backend 'triton' needs CUDA tensors (got devices {devices}) "
            "or the Triton interpreter (TRITON_INTERPRET=1)"
        )
    return "triton"
