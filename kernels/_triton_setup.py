"""Optional Triton import and launch settings shared by the op files.

The kernels package must import without Triton (PyTorch path only): op files define their
kernels under `if HAS_TRITON:`.
"""

from __future__ import annotations

from .dispatch import triton_interpreting

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # torch-only installation
    triton = None
    tl = None
    HAS_TRITON = False


def next_pow2(n: int, minimum: int = 16) -> int:
    p = minimum
    while p < n:
        p *= 2
    return p


def interpreting() -> bool:
    """True when kernels run under Triton's CPU interpreter (about 1 ms per program there, so
    launchers pick tiles that cover more rows per program)."""
    return triton_interpreting()
