"""The CUDA part of the native build: compiled where a CUDA toolkit exists, used on GPUs."""

import shutil

import numpy as np
import pytest

from vlarl_fast._native import C
from vlarl_fast.engine.cuda import cuda_available, pin_host_array


def test_cuda_support_is_reported_consistently():
    assert isinstance(C.CUDA_ENABLED, bool)
    count = C.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    if not C.CUDA_ENABLED:
        assert count == 0


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs a CUDA toolkit (nvcc) at build time")
def test_cuda_sources_were_compiled_where_a_toolkit_exists():
    assert C.CUDA_ENABLED, "nvcc is on PATH but the build says CPU-only"


def test_pinning_without_a_gpu_is_a_clear_error():
    if cuda_available():
        pytest.skip("a GPU is present: the error path is for CPU machines")
    with pytest.raises(RuntimeError, match="(no CUDA device|no CUDA support)"):
        pin_host_array(np.zeros(16, dtype=np.uint8))


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and a CUDA build")
def test_pinned_frames_copy_to_gpu_asynchronously():
    import torch

    frames = np.random.default_rng().integers(0, 255, size=(4, 2, 64, 64, 3), dtype=np.uint8)
    handle = pin_host_array(frames)
    host = torch.from_numpy(frames)
    assert host.is_pinned()
    gpu = host.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(gpu.cpu(), host)
    handle.release()
