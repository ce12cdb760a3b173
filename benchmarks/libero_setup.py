"""LIBERO defaults for benchmarks, set before anything imports libero: offscreen EGL rendering,
LIBERO's assets from <repo>/../shared/libero_assets when $VLARL_LIBERO_ASSETS is unset, and a
LIBERO config folder of this run's own when there is none (without one, importing libero waits
for keyboard input)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def libero_defaults() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    shared = REPO.parent / "shared" / "libero_assets"
    if "VLARL_LIBERO_ASSETS" not in os.environ and shared.is_dir():
        os.environ["VLARL_LIBERO_ASSETS"] = str(shared)
    if "LIBERO_CONFIG_PATH" not in os.environ and not Path("~/.libero/config.yaml").expanduser().exists():
        os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")
