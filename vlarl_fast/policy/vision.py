"""The fused vision backbone: two timm-layout ViTs (DINOv2 ViT-L/14-reg4 and SigLIP SO400M/14).

timm cannot be imported on CPU-torch machines (every release imports torchvision), so the towers are
re-implemented here with timm's `VisionTransformer` parameter names, shapes and maths:
`patch_embed.proj`, `cls_token`, `reg_token`, `pos_embed`, `blocks.N.{norm1, attn.qkv, attn.proj,
ls1, norm2, mlp.fc1, mlp.fc2, ls2}`, `norm`, and SigLIP's `attn_pool.*`. One deliberate rename
follows the official OpenVLA checkpoints: Prismatic patches timm's `LayerScale.gamma` into
`LayerScale.scale_factor` (HF transformers mangles names containing `gamma`), so the parameter is
called `scale_factor` here and checkpoints load unchanged. `tests/policy/test_vision_timm_parity.py`
checks numerical parity with timm wherever timm imports.

Features follow Prismatic: `get_intermediate_layers(n={depth - 2})`, i.e. the patch tokens (prefix
tokens dropped) after block `depth - 2`, without the final norm. The last block, `norm` and
`attn_pool` exist so checkpoints round-trip, but they receive no gradient and are frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vlarl_fast.policy.config import ViTConfig


def _activation(name: str) -> nn.Module:
    return nn.GELU(approximate="tanh") if name == "gelu_tanh" else nn.GELU()


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """timm's LayerScale with Prismatic's `scale_factor` parameter name."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.act = _activation(act)
        self.fc2 = nn.Linear(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads)
        self.ls1 = LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden_dim, cfg.act)
        self.ls2 = LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """timm's attention-pool head (SigLIP `global_pool='map'`): one latent query over the tokens."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.head_dim = d // cfg.num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.q = nn.Linear(d, d, bias=True)
        self.kv = nn.Linear(d, 2 * d, bias=True)
        self.proj = nn.Linear(d, d, bias=True)
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden_dim, cfg.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(self.latent.expand(b, -1, -1)).reshape(b, 1, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(b, 1, c)
        out = self.proj(out)
        out = out + self.mlp(self.norm(out))
        return out[:, 0]


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = False
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        if cfg.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.num_reg_tokens:
            self.reg_token = nn.Parameter(torch.zeros(1, cfg.num_reg_tokens, d))
        pos_len = cfg.num_patches + (cfg.num_prefix_tokens if cfg.pos_embed_includes_prefix else 0)
        self.pos_embed = nn.Parameter(torch.randn(1, pos_len, d) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        if cfg.attn_pool:
            self.attn_pool = AttentionPoolLatent(cfg)
        self._init_weights()
        # Parameters the featurizer never uses (Prismatic reads block depth-2 without the norm).
        for module in [self.blocks[cfg.depth - 1], self.norm] + ([self.attn_pool] if cfg.attn_pool else []):
            module.requires_grad_(False)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        if self.cfg.class_token:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.cfg.num_reg_tokens:
            nn.init.normal_(self.reg_token, std=1e-6)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding, prefix tokens (cls then registers, timm order) and position embedding."""
        x = self.patch_embed(x)
        prefix = []
        if self.cfg.class_token:
            prefix.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.cfg.num_reg_tokens:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.cfg.pos_embed_includes_prefix:
            return torch.cat(prefix + [x], dim=1) + self.pos_embed
        return torch.cat(prefix + [x + self.pos_embed], dim=1)

    def forward_intermediate(self, x: torch.Tensor, block_index: int) -> torch.Tensor:
        """All tokens after `blocks[block_index]` (no final norm)."""
        x = self.embed(x)
        for blk in self.blocks[: block_index + 1]:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prismatic features: patch tokens after block depth-2, `[B, num_patches, embed_dim]`."""
        return self.forward_intermediate(x, self.cfg.feature_block_index)[:, self.cfg.num_prefix_tokens :]


class FusedVisionBackbone(nn.Module):
    """Prismatic's `PrismaticVisionBackbone` with a fused backbone: per image, DINOv2 reads input
    channels 0..2, SigLIP channels 3..5, features are concatenated on the channel axis and images
    on the token axis. Input `[B, num_images, 6, S, S]`, output `[B, num_images * P, D1 + D2]`."""

    def __init__(self, featurizer_cfg: ViTConfig, fused_cfg: ViTConfig):
        super().__init__()
        self.featurizer = VisionTransformer(featurizer_cfg)
        self.fused_featurizer = VisionTransformer(fused_cfg)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 5 or pixel_values.shape[2] != 6:
            raise ValueError(f"pixel_values must be [B, num_images, 6, S, S], got {tuple(pixel_values.shape)}")
        b, n = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        feats = torch.cat([self.featurizer(flat[:, :3]), self.fused_featurizer(flat[:, 3:])], dim=2)
        return feats.reshape(b, n * feats.shape[1], feats.shape[2])
