"""Our timm-layout ViTs against timm itself (runs only where timm imports, e.g. with a CUDA torch)."""

import pytest
import torch

from vlarl_fast.policy import OpenVLAOFTConfig, ViTConfig
from vlarl_fast.policy.vision import VisionTransformer

try:
    import timm  # noqa: F401
    from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

    TIMM_ERROR = None
except Exception as exc:  # timm imports torchvision, which needs a CUDA torch build
    TIMM_ERROR = f"timm is not importable here ({type(exc).__name__}: {exc}); this parity check needs a CUDA GPU machine with timm"

pytestmark = pytest.mark.skipif(TIMM_ERROR is not None, reason=TIMM_ERROR or "")


def timm_tower(cfg: ViTConfig):
    return TimmVisionTransformer(
        img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=(cfg.mlp_hidden_dim + 0.5) / cfg.embed_dim,  # timm: int(dim * ratio)
        class_token=cfg.class_token,
        reg_tokens=cfg.num_reg_tokens, no_embed_class=not cfg.pos_embed_includes_prefix,
        init_values=cfg.layer_scale_init, global_pool="map" if cfg.attn_pool else "token", num_classes=0,
    )


def to_prismatic_names(state):
    return {k.replace(".gamma", ".scale_factor"): v for k, v in state.items()}


@pytest.mark.parametrize("tower", [0, 1])
def test_tiny_towers_match_timm_numerically(tower):
    cfg = OpenVLAOFTConfig.tiny(image_size=16).vision[tower]
    torch.manual_seed(0)
    reference = timm_tower(cfg).eval()
    ours = VisionTransformer(cfg).eval()
    ours.load_state_dict(to_prismatic_names(reference.state_dict()), strict=True)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    expected = reference.get_intermediate_layers(x, n={cfg.depth - 2})[0]
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tower", [0, 1])
def test_full_size_towers_have_timm_names_and_shapes(tower):
    cfg = OpenVLAOFTConfig.openvla_7b().vision[tower]
    reference = timm.create_model(cfg.timm_id, pretrained=False, num_classes=0, img_size=224)
    with torch.device("meta"):
        ours = VisionTransformer(cfg)
    theirs = {k: tuple(v.shape) for k, v in to_prismatic_names(reference.state_dict()).items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs
