"""Test-wide settings.

Triton kernels run under Triton's CPU interpreter where no CUDA device exists; the variable must
be set before triton is first imported, so it is set here, at collection time.
MuJoCo renders offscreen through EGL (Mesa llvmpipe on CPU machines).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

try:
    import torch

    _has_cuda = torch.cuda.is_available()
except Exception:  # torch missing: the kernel tests skip themselves
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
