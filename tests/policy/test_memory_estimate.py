"""The analytic parameter count behind the 7B memory estimate equals the built model's."""

import pytest
import torch

from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig
from vlarl_fast.policy.memory_estimate import estimate_memory, parameter_count, sequence_length


@pytest.mark.parametrize(
    "config",
    [OpenVLAOFTConfig.openvla_7b(), OpenVLAOFTConfig.openvla_7b(num_images=2, use_proprio=True), OpenVLAOFTConfig.tiny(2, True)],
    ids=["7b", "7b-2img-proprio", "tiny-2img-proprio"],
)
def test_parameter_count_matches_the_model(config):
    with torch.device("meta"):
        model = OpenVLAOFT(config)
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())


def test_memory_estimate_arithmetic():
    cfg = OpenVLAOFTConfig.openvla_7b()
    assert sequence_length(cfg, 32) == 1 + 256 + 32 + 56 + 1
    est = estimate_memory(cfg, num_gpus=8)
    assert est.value("train: fp32 params+grads+AdamW") == pytest.approx(7_541_237_184 * 16 / 8 / 1e9)
    assert est.value("rollout: bf16 weights") == pytest.approx(7_541_237_184 * 2 / 1e9)
    ckpt = estimate_memory(cfg, checkpointing=True)
    assert ckpt.value("train: total") < est.value("train: total")
    assert "GB/GPU" in est.table()


def test_checkpointing_shrinks_both_llm_and_vision_activations():
    full, ckpt = estimate_memory(), estimate_memory(checkpointing=True)
    assert ckpt.value("train: LLM activations") < 0.2 * full.value("train: LLM activations")
    assert ckpt.value("train: ViT+projector activations") < 0.5 * full.value("train: ViT+projector activations")
