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


FRAME = 64  # frame side for tests: small, since llvmpipe renders slowly


@pytest.fixture(scope="session")
def get_scene():
    """get_scene(suite, index) -> LiberoScene, built once per session."""
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import LiberoScene

    return lambda suite, index=0: cached(("scene", suite, index),
                                         lambda: LiberoScene(get_task(suite, index)))


@pytest.fixture(scope="session")
def get_reference():
    """get_reference(suite, index) -> LIBERO's OffScreenRenderEnv (agentview + wrist, FRAME px),
    built once per session."""
    from vlarl_fast.envs.libero.registry import get_task
    from vlarl_fast.envs.libero.scene import make_libero_env

    return lambda suite, index=0: cached(
        ("reference", suite, index),
        lambda: make_libero_env(get_task(suite, index), height=FRAME, width=FRAME))


@pytest.fixture(scope="session")
def scene_dict(get_scene):
    """A scenes dict (as LiberoBatch / evaluate_suite take) pre-filled from the session cache."""
    class _Scenes(dict):
        def __missing__(self, key):
            self[key] = get_scene(*key)
            return self[key]

        def __contains__(self, key):
            self[key]  # build (or fetch) on first lookup
            return True

    return _Scenes()
