"""LIBERO test setup: the asset pack at $VLARL_LIBERO_ASSETS (default <repo>/../shared/libero_assets)
and a LIBERO config folder of the test session's own (LIBERO_CONFIG_PATH), set before anything
imports `libero`. LIBERO envs are slow to build here, so scenes and reference envs are cached for
the whole session."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ASSETS = REPO.parent / "shared" / "libero_assets"

os.environ.setdefault("VLARL_LIBERO_ASSETS", str(DEFAULT_ASSETS))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if "LIBERO_CONFIG_PATH" not in os.environ:
    import tempfile

    os.environ["LIBERO_CONFIG_PATH"] = tempfile.mkdtemp(prefix="vlarl_libero_cfg_")

_cache = {}


def cached(key, build):
    if key not in _cache:
        _cache[key] = build()
    return _cache[key]


@pytest.fixture(scope="session")
def libero_cache():
    """Session-wide cache: `libero_cache(key, build)` builds once."""
    return cached
