"""Fixtures for the policy tests: tiny presets, the tiny tokenizer, hand-written statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer

INSTRUCTIONS = ["pick up the black bowl", "Open the top drawer", "put both the alphabet soup and the cream cheese box in the basket"]


def libero_like_stats(proprio_dim: int = 8) -> dict:
    return {
        "libero_spatial_no_noops": {
            "action": {
                "q01": [-0.5, -1.0, -2.0, -0.1, -0.2, -0.3, 0.0],
                "q99": [1.5, 1.0, 2.0, 0.1, 0.2, 0.3, 1.0],
                "mask": [True, True, True, True, True, True, False],
            },
            "proprio": {
                "q01": [-1.0] * proprio_dim,
                "q99": [3.0] * proprio_dim,
                "mask": [True] * (proprio_dim - 1) + [False],
            },
        }
    }


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PromptTokenizer:
    return PromptTokenizer.tiny()


@pytest.fixture
def stats() -> dict:
    return libero_like_stats()


@pytest.fixture
def make_model(tiny_tokenizer):
    def factory(num_images: int = 1, use_proprio: bool = False, seed: int = 0, image_size: int = 16, **changes) -> OpenVLAOFT:
        cfg = OpenVLAOFTConfig.tiny(num_images=num_images, use_proprio=use_proprio, image_size=image_size)
        if changes:
            cfg = cfg.replace(**changes)
        torch.manual_seed(seed)
        model = OpenVLAOFT(cfg, tokenizer=tiny_tokenizer, norm_stats=libero_like_stats(cfg.proprio_dim))
        # Random init leaves the bin logits almost flat; scale the head so distributions are peaked
        # enough for the tests to tell positions and inputs apart.
        with torch.no_grad():
            model.language_model.lm_head.weight.mul_(40.0)
        return model.eval()

    return factory


def make_frames(batch: int, num_images: int = 1, height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, num_images, height, width, 3), dtype=np.uint8)


def make_proprio(batch: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 4.0, size=(batch, dim)).astype(np.float32)
