"""Page-locking engine buffers for fast, asynchronous copies to the GPU.

`pin_host_array(engine.frames)` registers the frame buffer with CUDA (cudaHostRegister), so
`torch.from_numpy(frames).to("cuda", non_blocking=True)` is a true async DMA that overlaps with
the next chunk's simulation. Needs a build with CUDA (a CUDA toolkit at build time) and a GPU.
"""

from __future__ import annotations

import numpy as np

from vlarl_fast._native import C


def cuda_available() -> bool:
    """True when this build has CUDA support and a CUDA device is visible."""
    return bool(C.CUDA_ENABLED) and C.cuda_device_count() > 0


class PinnedHostArray:
    """Keeps a numpy array's memory page-locked until `release()` (or garbage collection)."""

    def __init__(self, array: np.ndarray):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"array must be a numpy.ndarray, got {type(array).__name__}")
        if not C.CUDA_ENABLED:
            raise RuntimeError("this vlarl-fast build has no CUDA support: rebuild it on a machine "
                               "with a CUDA toolkit (pip install -e . with nvcc on PATH)")
        if C.cuda_device_count() == 0:
            raise RuntimeError("no CUDA device is visible: pinning host memory needs a GPU")
        base = array
        while isinstance(base.base, np.ndarray):
            base = base.base
        self.array = array
        self._address = array.__array_interface__["data"][0]
        self._nbytes = array.nbytes
        C.cuda_host_register(self._address, self._nbytes)
        self._pinned = True

    def release(self) -> None:
        if self._pinned:
            C.cuda_host_unregister(self._address)
            self._pinned = False

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


def pin_host_array(array: np.ndarray) -> PinnedHostArray:
    """Page-locks `array`'s memory (e.g. `engine.frames`); keep the returned handle alive."""
    return PinnedHostArray(array)
