"""Which EGL device a rank renders on: the one that is its CUDA device.

EGL device indices (EGL_EXT_device_enumeration order) are not CUDA ordinals: on a multi-GPU
node EGL device 0 need not be CUDA device 0, and Mesa adds software devices to the list. NVIDIA's
driver tells which CUDA device an EGL device is (`EGL_CUDA_DEVICE_NV` of EGL_NV_device_cuda);
`egl_devices()` reads it for every device (csrc/core/egl_context.h).

`choose_egl_device(cuda_ordinal, devices, ...)` is the rule, a pure function (tests inject
device lists):
  1. an explicit override (config `env.egl_device`, else $VLARL_EGL_DEVICE, else
     $MUJOCO_EGL_DEVICE_ID) wins, checked against the device count;
  2. else the EGL device whose CUDA ordinal is the rank's CUDA device;
  3. else, where no device reports a CUDA ordinal (no NVIDIA EGL driver, e.g. Mesa llvmpipe, or
     the rank has no CUDA device), -1: EGL's default device (the first that initialises), with
     a note that says so.
A CUDA device that some devices report but none matches is an error (rendering would land on
another GPU). CUDA_VISIBLE_DEVICES: torch numbers the visible devices from 0; when EGL reports
more CUDA ordinals than are visible, they are the unmasked ones, and a rank's ordinal is
translated through CUDA_VISIBLE_DEVICES (integer lists only) before matching.

`apply_rank_egl_device(...)` makes the choice for this process: it sets $MUJOCO_EGL_DEVICE_ID,
which the engine's renderer (`egl_device` default) and MuJoCo's own Python EGL both read, and
prints the fallback note once per process. This module never imports torch: the caller passes
the rank's CUDA ordinal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

OVERRIDE_ENV_VARS = ("VLARL_EGL_DEVICE", "MUJOCO_EGL_DEVICE_ID")
CUDA_EXTENSION = "EGL_NV_device_cuda"

_noted = False


@dataclass(frozen=True)
class EglDevice:
    index: int  # EGL device index
    cuda_device: int = -1  # EGL_CUDA_DEVICE_NV; -1: the driver reports none
    extensions: str = ""
    drm_file: str = ""


@dataclass(frozen=True)
class EglChoice:
    index: int  # EGL device index; -1: EGL's default device
    reason: str  # one line: why this device
    fallback: bool = False  # True when the rank's CUDA device could not be mapped


def egl_devices() -> list[EglDevice]:
    """Every EGL device of this machine with its CUDA ordinal (needs the native core)."""
    from vlarl_fast._native import C

    return [EglDevice(**row) for row in C.egl_devices()]


def _parse_index(text, source: str) -> int:
    value = str(text).strip()
    if not value.lstrip("-").isdigit() or int(value) < -1:
        raise ValueError(f"{source} must be an EGL device index (>= 0, or -1 for EGL's default), "
                         f"got {text!r}")
    return int(value)


def override_from_env(environ=None) -> tuple[int, str] | None:
    """(index, variable) of the first override variable set, else None."""
    environ = os.environ if environ is None else environ
    for name in OVERRIDE_ENV_VARS:
        if environ.get(name, "").strip():
            return _parse_index(environ[name], name), name
    return None


def physical_cuda_ordinal(cuda_ordinal: int, visible: str | None) -> int | None:
    """The unmasked ordinal of visible device `cuda_ordinal` under CUDA_VISIBLE_DEVICES=visible
    (None: not an integer list, e.g. GPU UUIDs)."""
    if visible is None or not visible.strip():
        return cuda_ordinal
    items = [v.strip() for v in visible.split(",") if v.strip()]
    if not all(v.isdigit() for v in items) or not 0 <= cuda_ordinal < len(items):
        return None
    return int(items[cuda_ordinal])


def choose_egl_device(cuda_ordinal: int | None, devices: Sequence[EglDevice], *,
                      override: int | None = None, override_source: str = "override",
                      cuda_visible_devices: str | None = None,
                      visible_count: int | None = None) -> EglChoice:
    """The EGL device for a rank whose CUDA device is `cuda_ordinal` (None: no CUDA device);
    see the module docstring for the rule."""
    if override is not None:
        override = _parse_index(override, override_source)
        if override >= len(devices) and devices:
            raise ValueError(f"{override_source}={override}: only {len(devices)} EGL device(s) "
                             f"(indices 0..{len(devices) - 1})")
        return EglChoice(override, f"EGL device {override} from {override_source}")
    cuda_devices = [d for d in devices if d.cuda_device >= 0]
    if cuda_ordinal is None or not cuda_devices:
        why = ("this rank has no CUDA device" if cuda_ordinal is None else
               f"no NVIDIA EGL device ({CUDA_EXTENSION}) among {len(devices)} EGL device(s)")
        return EglChoice(-1, f"rendering on EGL's default device: {why}", fallback=True)
    target = cuda_ordinal
    reported = max(d.cuda_device for d in cuda_devices)
    if visible_count is not None and reported >= visible_count and cuda_visible_devices:
        target = physical_cuda_ordinal(cuda_ordinal, cuda_visible_devices)
        if target is None:
            raise ValueError(f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} is not a list of "
                             f"device numbers: cannot tell which EGL device is CUDA device "
                             f"{cuda_ordinal}; set VLARL_EGL_DEVICE")
    for d in cuda_devices:
        if d.cuda_device == target:
            via = "" if target == cuda_ordinal else f" (CUDA_VISIBLE_DEVICES: physical {target})"
            return EglChoice(d.index, f"EGL device {d.index} is CUDA device {cuda_ordinal}{via}")
    listing = ", ".join(f"EGL {d.index} -> CUDA {d.cuda_device}" for d in cuda_devices)
    raise ValueError(f"no EGL device is CUDA device {target} ({listing}); set VLARL_EGL_DEVICE "
                     f"or env.egl_device to choose one")


def apply_rank_egl_device(cuda_ordinal: int | None, override: int | None = None, *,
                          visible_count: int | None = None, devices=None,
                          log=None) -> EglChoice:
    """Chooses this process's EGL device and sets $MUJOCO_EGL_DEVICE_ID to it (left unset for
    -1). `override`: the config's choice (None: the environment's, else automatic). The
    fallback note is printed once per process (to `log`, default stderr)."""
    global _noted
    source = "config env.egl_device"
    if override is None:
        found = override_from_env()
        if found is not None:
            override, source = found
    if devices is None:
        devices = egl_devices()
    choice = choose_egl_device(cuda_ordinal, devices, override=override, override_source=source,
                               cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                               visible_count=visible_count)
    if choice.index >= 0:
        os.environ["MUJOCO_EGL_DEVICE_ID"] = str(choice.index)
    if choice.fallback and not _noted:
        _noted = True
        (log or (lambda line: print(line, file=sys.stderr, flush=True)))(f"[render] {choice.reason}")
    return choice
