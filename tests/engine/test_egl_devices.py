"""Per-rank rendering device: the EGL device whose CUDA ordinal (EGL_CUDA_DEVICE_NV) is the
rank's CUDA device, overridable, falling back to EGL's default where no NVIDIA EGL device exists.

The rule is tested on injected device lists (NVIDIA multi-GPU orders, Mesa, mixed, masked
CUDA_VISIBLE_DEVICES); the native query is tested on this machine's EGL (on Mesa no device
reports a CUDA ordinal, so the fallback is what runs here)."""

from __future__ import annotations

import pytest

from vlarl_fast._native import C
from vlarl_fast.engine import egl_devices as E
from vlarl_fast.engine.egl_devices import EglDevice, choose_egl_device

NV = "EGL_NV_device_cuda EGL_EXT_device_drm"


def nvidia(order):
    """EGL devices in EGL order, device i being CUDA device order[i]."""
    return [EglDevice(i, c, NV, f"/dev/dri/card{i}") for i, c in enumerate(order)]


MESA = [EglDevice(0, -1, "EGL_MESA_device_software"), EglDevice(1, -1, "EGL_EXT_device_drm")]


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]])
def test_each_rank_gets_the_egl_device_of_its_cuda_device(order):
    devices = nvidia(order)
    chosen = [choose_egl_device(rank, devices).index for rank in range(4)]
    assert [order[i] for i in chosen] == [0, 1, 2, 3]  # EGL index -> its CUDA ordinal
    assert len(set(chosen)) == 4
    assert chosen == [order.index(r) for r in range(4)]


def test_software_devices_next_to_nvidia_ones_are_skipped():
    devices = [EglDevice(0, -1, "EGL_MESA_device_software")] + [
        EglDevice(i + 1, c, NV) for i, c in enumerate([1, 0])]
    assert choose_egl_device(0, devices).index == 2
    assert choose_egl_device(1, devices).index == 1


def test_without_nvidia_egl_devices_the_default_device_is_used_and_said():
    for cuda in (0, 3, None):
        choice = choose_egl_device(cuda, MESA)
        assert choice.index == -1 and choice.fallback
    assert "no NVIDIA EGL device" in choose_egl_device(0, MESA).reason
    assert "no CUDA device" in choose_egl_device(None, nvidia([0, 1])).reason
    assert choose_egl_device(0, []).index == -1


def test_override_wins_and_is_checked():
    assert choose_egl_device(1, nvidia([0, 1]), override=0).index == 0
    assert not choose_egl_device(1, nvidia([0, 1]), override=0).fallback
    assert choose_egl_device(None, MESA, override=1).index == 1
    assert choose_egl_device(0, nvidia([0, 1]), override=-1).index == -1
    with pytest.raises(ValueError, match="VLARL_EGL_DEVICE=5: only 2 EGL device"):
        choose_egl_device(0, nvidia([0, 1]), override=5, override_source="VLARL_EGL_DEVICE")
    with pytest.raises(ValueError, match="must be an EGL device index"):
        choose_egl_device(0, nvidia([0, 1]), override="gpu1", override_source="VLARL_EGL_DEVICE")


def test_unmatched_cuda_device_is_an_error_not_a_silent_wrong_gpu():
    with pytest.raises(ValueError, match=r"no EGL device is CUDA device 2 \(EGL 0 -> CUDA 1, EGL 1 -> CUDA 0\)"):
        choose_egl_device(2, nvidia([1, 0]))


def test_cuda_visible_devices_translation():
    devices = nvidia([3, 2, 1, 0])  # EGL reports the unmasked ordinals of 4 GPUs
    # two visible GPUs (physical 2 and 3) seen by torch as 0 and 1
    got = [choose_egl_device(r, devices, cuda_visible_devices="2,3", visible_count=2).index for r in (0, 1)]
    assert got == [1, 0]
    # EGL reporting only ordinals < visible count: they are already the masked ones
    assert choose_egl_device(1, nvidia([1, 0]), cuda_visible_devices="2,3", visible_count=2).index == 0
    with pytest.raises(ValueError, match="not a list of device numbers"):
        choose_egl_device(0, devices, cuda_visible_devices="GPU-1234", visible_count=1)
    assert E.physical_cuda_ordinal(1, "4, 6") == 6
    assert E.physical_cuda_ordinal(0, None) == 0
    assert E.physical_cuda_ordinal(2, "4,6") is None


def test_override_from_environment(monkeypatch):
    monkeypatch.delenv("VLARL_EGL_DEVICE", raising=False)
    monkeypatch.delenv("MUJOCO_EGL_DEVICE_ID", raising=False)
    assert E.override_from_env() is None
    monkeypatch.setenv("MUJOCO_EGL_DEVICE_ID", "1")
    assert E.override_from_env() == (1, "MUJOCO_EGL_DEVICE_ID")
    monkeypatch.setenv("VLARL_EGL_DEVICE", "0")
    assert E.override_from_env() == (0, "VLARL_EGL_DEVICE")


def test_native_query_lists_every_egl_device():
    devices = E.egl_devices()
    assert [d.index for d in devices] == list(range(C.egl_device_count()))
    for d in devices:
        if E.CUDA_EXTENSION in d.extensions.split():
            assert d.cuda_device >= 0  # NVIDIA's driver answers for its own devices
        else:
            assert d.cuda_device == -1
    print("EGL devices here:", [(d.index, d.cuda_device, d.extensions, d.drm_file) for d in devices])


@pytest.fixture
def clean_env(monkeypatch):
    """No override variables, and MUJOCO_EGL_DEVICE_ID restored however the test leaves it."""
    environ = E.os.environ
    saved = {k: environ.pop(k) for k in E.OVERRIDE_ENV_VARS if k in environ}
    monkeypatch.setattr(E, "_noted", False)
    yield environ
    for k in E.OVERRIDE_ENV_VARS:
        environ.pop(k, None)
    environ.update(saved)


def test_apply_sets_the_process_device_or_falls_back_once(clean_env):
    lines = []
    choice = E.apply_rank_egl_device(1, devices=nvidia([1, 0]), log=lines.append)
    assert choice.index == 0 and clean_env["MUJOCO_EGL_DEVICE_ID"] == "0" and lines == []
    del clean_env["MUJOCO_EGL_DEVICE_ID"]
    for _ in range(3):
        choice = E.apply_rank_egl_device(0, devices=MESA, log=lines.append)
        assert choice.index == -1 and "MUJOCO_EGL_DEVICE_ID" not in E.os.environ
    assert len(lines) == 1 and lines[0].startswith("[render] rendering on EGL's default device")
    # this machine, as a rank with CUDA device 0 would ask
    real = E.apply_rank_egl_device(0, log=lines.append)
    if not any(d.cuda_device >= 0 for d in E.egl_devices()):
        assert real.index == -1 and real.fallback
