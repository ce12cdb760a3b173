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


# ---------------------------------------------------------------------- policies and crafted states
LIBERO_TEST_STATS = {"action": {"q01": [-0.5] * 6 + [0.0], "q99": [0.5] * 6 + [1.0],
                                "mask": [True] * 6 + [False]}}
PREPROCESSING_KEYS = ("rotate_180", "center_crop", "crop_scale", "resize_mode", "gripper_mode", "image_pipeline")


def tiny_checkpoint(directory, suite: str = "libero_spatial", num_images: int = 1, image_size: int = 16,
                    seed: int = 0):
    """A tiny, randomly initialised OpenVLA-OFT checkpoint in the official HF layout, with action
    statistics under `<suite>_no_noops` (as OpenVLA-OFT's LIBERO checkpoints name them). Its
    config.json carries no preprocessing keys, as an official checkpoint's does not."""
    import json

    import torch

    from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer, save_pretrained

    tok = PromptTokenizer.tiny()
    cfg = OpenVLAOFTConfig.tiny(num_images=num_images, use_proprio=False, image_size=image_size)
    torch.manual_seed(seed)
    stats = {f"{suite}_no_noops": LIBERO_TEST_STATS}
    path = save_pretrained(OpenVLAOFT(cfg, tokenizer=tok, norm_stats=stats), directory, stats, tok)
    config = json.loads((path / "config.json").read_text())
    for key in PREPROCESSING_KEYS:
        config.get("vlarl_fast", {}).pop(key, None)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


def solved_state(scene, state):
    """`state` with every `On(a, b)` goal object placed 4 cm above its target's centre: after
    the settle steps it rests there, so LIBERO's goal holds at the first policy step."""
    import mujoco
    import numpy as np

    model = scene.model
    data = mujoco.MjData(model)
    out = np.array(state, dtype=np.float64)
    data.qpos[:] = out[1:1 + model.nq]
    mujoco.mj_forward(model, data)
    names = [model.body(i).name for i in range(model.nbody)]
    for predicate, a, b in scene.goal():
        assert predicate == "on", f"solved_state handles On goals only, got {predicate}"
        target = next(n for n in names if n == b or n == f"{b}_main")
        adr = model.jnt_qposadr[model.joint(f"{a}_joint0").id]
        out[1 + adr:1 + adr + 3] = data.xpos[model.body(target).id] + np.array([0.0, 0.0, 0.04])
    return out
