"""Fused backbone semantics that hold independently of timm (timm parity is in test_vision_timm_parity)."""

import torch

from vlarl_fast.policy import OpenVLAOFTConfig
from vlarl_fast.policy.vision import FusedVisionBackbone


def backbone(num_images: int = 1) -> FusedVisionBackbone:
    cfg = OpenVLAOFTConfig.tiny(num_images=num_images)
    torch.manual_seed(0)
    return FusedVisionBackbone(*cfg.vision).eval()


def test_features_are_block_depth_minus_2_without_final_norm():
    model = backbone()
    x = torch.randn(2, 1, 6, 16, 16)
    before = model(x)
    assert before.shape == (2, 16, 32 + 48)
    with torch.no_grad():
        for tower in (model.featurizer, model.fused_featurizer):
            for p in list(tower.blocks[-1].parameters()) + list(tower.norm.parameters()):
                p.add_(1.0)
        for p in model.fused_featurizer.attn_pool.parameters():
            p.add_(1.0)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    with torch.no_grad():
        model.featurizer.blocks[-2].mlp.fc2.bias.add_(1.0)
    # the feature block's last op is `x + ls2 * mlp(...)`: a bias shift of 1 moves every DINOv2 feature by 0.1
    torch.testing.assert_close(model(x)[..., :32] - before[..., :32], torch.full_like(before[..., :32], 0.1), rtol=0, atol=1e-5)


def test_channels_and_images_route_to_the_right_tower_and_tokens():
    model = backbone(num_images=2)
    x = torch.randn(1, 2, 6, 16, 16)
    base = model(x)
    assert base.shape == (1, 32, 80)
    siglip_only = x.clone()
    siglip_only[:, 0, 3:] += 1.0  # SigLIP channels of image 0
    out = model(siglip_only)
    torch.testing.assert_close(out[..., :32], base[..., :32], rtol=0, atol=0)  # DINOv2 features untouched
    assert (out[:, :16, 32:] - base[:, :16, 32:]).abs().max() > 1e-3
    torch.testing.assert_close(out[:, 16:], base[:, 16:], rtol=0, atol=0)  # image 1's tokens untouched


def test_prefix_tokens_take_part_but_are_dropped():
    model = backbone()
    x = torch.randn(1, 1, 6, 16, 16)
    base = model(x)
    with torch.no_grad():
        model.featurizer.reg_token.add_(torch.randn_like(model.featurizer.reg_token))
    changed = model(x)
    assert changed.shape == base.shape  # 16 patch tokens, no cls/register tokens
    assert (changed[..., :32] - base[..., :32]).abs().max() > 1e-4  # registers are attended to
    assert model.featurizer.pos_embed.shape == (1, 16, 32)  # DINOv2-reg: position embedding on patches only
