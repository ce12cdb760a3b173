"""Configuration of the OpenVLA-OFT policy (SimpleVLA-RL's discrete action-token variant).

`OpenVLAOFTConfig.openvla_7b()` is the real layout (DINOv2 ViT-L/14-reg4 + SigLIP SO400M/14 at 224 px,
fused-MLP projector, Llama-2-7B with a 32064-row padded vocabulary). `OpenVLAOFTConfig.tiny()` keeps
every structural feature (two fused towers with class/register tokens, LayerScale and SigLIP's
attention-pool head, the 3-layer projector, 1 or 2 images, optional proprio token, parallel decoding,
the action-bin slice of the LM head) at sizes that run on a CPU in milliseconds.

Action bins: the LM head rows `[bin_start, bin_end) = [V - pad_to_multiple_of - n_action_bins,
V - pad_to_multiple_of)` are the action tokens (31744..31999 for V = 32064), i.e. SimpleVLA-RL's
`logits[..., -320:-64]`. A *bin index* b in 0..255 is the position inside that slice; its token id
is `bin_start + b`. See `action_tokenizer.py` for the mapping to continuous values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

DINOV2_TIMM_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_TIMM_ID = "vit_so400m_patch14_siglip_224"

_ACTIVATIONS = ("gelu", "gelu_tanh")
_RESIZE_MODES = ("bicubic", "bilinear")
_IMAGE_PIPELINES = ("simplevla", "resize")
_GRIPPER_MODES = ("libero", "none")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ViTConfig:
    """One timm `VisionTransformer` (same parameter names, shapes and maths).

    `layer_scale_init=None` means no LayerScale; `attn_pool=True` adds timm's `AttentionPoolLatent`
    head (SigLIP's `global_pool='map'`), present in checkpoints but unused by the featurizer, which
    returns the patch tokens of the second-to-last block without the final norm (Prismatic's
    `get_intermediate_layers(n={depth - 2})`).
    """

    timm_id: str
    image_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden_dim: int
    class_token: bool
    num_reg_tokens: int
    layer_scale_init: float | None
    attn_pool: bool
    pos_embed_includes_prefix: bool = False
    norm_eps: float = 1e-6
    act: str = "gelu"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        _require(self.image_size > 0 and self.patch_size > 0, f"ViTConfig: image_size and patch_size must be positive, got {self.image_size}, {self.patch_size}")
        _require(
            self.image_size % self.patch_size == 0,
            f"ViTConfig.image_size must be a multiple of patch_size={self.patch_size}, got {self.image_size}",
        )
        _require(
            self.embed_dim % self.num_heads == 0,
            f"ViTConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})",
        )
        _require(self.depth >= 2, f"ViTConfig.depth must be >= 2 (features come from block depth-2), got {self.depth}")
        _require(self.num_reg_tokens >= 0, f"ViTConfig.num_reg_tokens must be >= 0, got {self.num_reg_tokens}")
        _require(self.act in _ACTIVATIONS, f"ViTConfig.act must be one of {_ACTIVATIONS}, got {self.act!r}")
        _require(len(self.mean) == 3 and len(self.std) == 3, "ViTConfig.mean/std must have 3 entries")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.num_reg_tokens

    @property
    def feature_block_index(self) -> int:
        """Index of the block whose output is the feature map (second-to-last)."""
        return self.depth - 2

    @staticmethod
    def dinov2_vit_large_reg4(image_size: int = 224) -> "ViTConfig":
        return ViTConfig(
            timm_id=DINOV2_TIMM_ID, image_size=image_size, patch_size=14, embed_dim=1024, depth=24,
            num_heads=16, mlp_hidden_dim=4096, class_token=True, num_reg_tokens=4,
            layer_scale_init=1e-5, attn_pool=False, pos_embed_includes_prefix=False,
            mean=IMAGENET_MEAN, std=IMAGENET_STD,
        )

    @staticmethod
    def siglip_so400m(image_size: int = 224) -> "ViTConfig":
        return ViTConfig(
            timm_id=SIGLIP_TIMM_ID, image_size=image_size, patch_size=14, embed_dim=1152, depth=27,
            num_heads=16, mlp_hidden_dim=int(1152 * 3.7362), class_token=False, num_reg_tokens=0,
            layer_scale_init=None, attn_pool=True, pos_embed_includes_prefix=False,
            mean=SIGLIP_MEAN, std=SIGLIP_STD,
        )


@dataclass(frozen=True)
class TextConfig:
    """The Llama decoder. Defaults are transformers-4.40 `LlamaConfig` defaults, which is what
    OpenVLA's `text_config` (only `vocab_size`/`pad_token_id` overridden) resolves to."""

    vocab_size: int = 32064
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    hidden_act: str = "silu"

    def __post_init__(self) -> None:
        _require(
            self.hidden_size % self.num_attention_heads == 0,
            f"TextConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})",
        )
        _require(
            self.num_attention_heads % self.num_key_value_heads == 0,
            f"TextConfig.num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads ({self.num_key_value_heads})",
        )

    def to_llama_config(self, pad_token_id: int, bos_token_id: int, eos_token_id: int, attn_implementation: str = "sdpa"):
        from transformers import LlamaConfig

        cfg = LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position_embeddings,
            hidden_act=self.hidden_act,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
        )
        # OpenVLA-OFT's parallel decoding: every token attends to every non-pad token.
        cfg.is_causal = False
        cfg._attn_implementation = attn_implementation
        return cfg


@dataclass(frozen=True)
class OpenVLAOFTConfig:
    """Whole-policy configuration. `vision[0]` is Prismatic's `featurizer` (DINOv2, first 3 input
    channels), `vision[1]` its `fused_featurizer` (SigLIP, channels 3..5)."""

    vision: tuple[ViTConfig, ViTConfig]
    text: TextConfig = field(default_factory=TextConfig)
    num_images: int = 1
    use_proprio: bool = False
    proprio_dim: int = 8
    chunk_len: int = 8
    action_dim: int = 7
    n_action_bins: int = 256
    pad_to_multiple_of: int = 64
    pad_token_id: int = 32000
    bos_token_id: int = 1
    stop_token_id: int = 2
    empty_token_id: int = 29871  # Llama-2 '▁', appended after "Out:" as at OpenVLA training time
    # Image preprocessing (see processor.py and docs/policy.md, "What the policy sees").
    # image_pipeline: "simplevla" = SimpleVLA-RL's LIBERO resize, bit-exact (JPEG quality-95 round
    # trip, then TF lanczos3 with antialias to image_size, always applied); "resize" = the fast path
    # (antialiased `resize_mode` interpolation, only when the frame is not image_size already).
    image_pipeline: str = "simplevla"
    # rotate_180: the frames arrive in LIBERO/robosuite's raw render orientation (upside down), so
    # rotate them first, as SimpleVLA-RL's `img[::-1, ::-1]`. False for the engine's
    # image_convention="openvla" frames, which are already rotated.
    rotate_180: bool = False
    center_crop: bool = True
    crop_scale: float = 0.9
    resize_mode: str = "bicubic"
    gripper_mode: str = "libero"
    vision_backbone_id: str = "dinosiglip-vit-so-224px"
    llm_backbone_id: str = "llama2-7b-pure"

    def __post_init__(self) -> None:
        _require(len(self.vision) == 2, f"OpenVLAOFTConfig.vision must hold 2 towers (fused backbone), got {len(self.vision)}")
        a, b = self.vision
        _require(
            a.image_size == b.image_size and a.num_patches == b.num_patches,
            f"OpenVLAOFTConfig.vision towers must share image_size and patch grid, got {a.image_size}/{a.num_patches} and {b.image_size}/{b.num_patches}",
        )
        _require(self.num_images in (1, 2, 3), f"OpenVLAOFTConfig.num_images must be 1, 2 or 3, got {self.num_images}")
        _require(self.proprio_dim > 0, f"OpenVLAOFTConfig.proprio_dim must be positive, got {self.proprio_dim}")
        _require(self.chunk_len > 0 and self.action_dim > 0, f"OpenVLAOFTConfig.chunk_len/action_dim must be positive, got {self.chunk_len}/{self.action_dim}")
        _require(self.n_action_bins >= 2, f"OpenVLAOFTConfig.n_action_bins must be >= 2, got {self.n_action_bins}")
        _require(
            self.bin_start >= 0,
            f"OpenVLAOFTConfig: vocab_size ({self.text.vocab_size}) must exceed pad_to_multiple_of + n_action_bins ({self.pad_to_multiple_of + self.n_action_bins})",
        )
        for name in ("pad_token_id", "bos_token_id", "stop_token_id", "empty_token_id"):
            value = getattr(self, name)
            _require(0 <= value < self.text.vocab_size, f"OpenVLAOFTConfig.{name} must be in [0, {self.text.vocab_size}), got {value}")
        _require(0.0 < self.crop_scale <= 1.0, f"OpenVLAOFTConfig.crop_scale must be in (0, 1], got {self.crop_scale}")
        _require(self.image_pipeline in _IMAGE_PIPELINES, f"OpenVLAOFTConfig.image_pipeline must be one of {_IMAGE_PIPELINES}, got {self.image_pipeline!r}")
        _require(self.resize_mode in _RESIZE_MODES, f"OpenVLAOFTConfig.resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}")
        _require(self.gripper_mode in _GRIPPER_MODES, f"OpenVLAOFTConfig.gripper_mode must be one of {_GRIPPER_MODES}, got {self.gripper_mode!r}")

    # ---- derived layout ----------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.vision[0].image_size

    @property
    def num_patches_per_image(self) -> int:
        return self.vision[0].num_patches

    @property
    def vision_dim(self) -> int:
        return self.vision[0].embed_dim + self.vision[1].embed_dim

    @property
    def num_vision_tokens(self) -> int:
        """Tokens inserted after BOS: patches of every image, then the proprio token if used."""
        return self.num_patches_per_image * self.num_images + int(self.use_proprio)

    @property
    def num_action_tokens(self) -> int:
        return self.chunk_len * self.action_dim

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size

    @property
    def bin_end(self) -> int:
        """One past the last action-bin row of the LM head (= the tokenizer's unpadded vocab size)."""
        return self.text.vocab_size - self.pad_to_multiple_of

    @property
    def bin_start(self) -> int:
        return self.bin_end - self.n_action_bins

    def replace(self, **changes) -> "OpenVLAOFTConfig":
        return dataclasses.replace(self, **changes)

    # ---- presets ---------------------------------------------------------------------------------
    @staticmethod
    def openvla_7b(num_images: int = 1, use_proprio: bool = False, proprio_dim: int = 8) -> "OpenVLAOFTConfig":
        return OpenVLAOFTConfig(
            vision=(ViTConfig.dinov2_vit_large_reg4(224), ViTConfig.siglip_so400m(224)),
            text=TextConfig(),
            num_images=num_images,
            use_proprio=use_proprio,
            proprio_dim=proprio_dim,
        )

    @staticmethod
    def tiny(num_images: int = 1, use_proprio: bool = False, image_size: int = 16,
             patch_size: int = 4, width: int = 1, chunk_len: int = 8) -> "OpenVLAOFTConfig":
        """CPU test preset. Token ids follow `tokenizer.build_tiny_tokenizer()` (384 base ids,
        `<PAD>` = 384, padded vocabulary 448, bins = ids 128..383). Images take the fast
        `image_pipeline="resize"` path; both towers cut them into `patch_size` squares
        ((image_size / patch_size)^2 tokens per image). `width` multiplies every width (vision
        embeddings, text hidden size, MLPs) at the same head counts: about width^2 the parameters.
        `chunk_len`: actions per chunk, decoded in parallel (OpenVLA-OFT: 8 on LIBERO)."""
        from vlarl_fast.policy.tokenizer import TINY_BASE_VOCAB, TINY_EMPTY_TOKEN_ID

        dino = ViTConfig(
            timm_id="tiny-dinov2-reg4", image_size=image_size, patch_size=patch_size, embed_dim=32 * width, depth=3,
            num_heads=2, mlp_hidden_dim=128 * width, class_token=True, num_reg_tokens=4, layer_scale_init=1e-1,
            attn_pool=False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        )
        siglip = ViTConfig(
            timm_id="tiny-siglip", image_size=image_size, patch_size=patch_size, embed_dim=48 * width, depth=3,
            num_heads=2, mlp_hidden_dim=int(48 * width * 3.7362), class_token=False, num_reg_tokens=0,
            layer_scale_init=None, attn_pool=True, mean=SIGLIP_MEAN, std=SIGLIP_STD,
        )
        padded_vocab = ((TINY_BASE_VOCAB + 1 + 63) // 64) * 64
        text = TextConfig(
            vocab_size=padded_vocab, hidden_size=64 * width, intermediate_size=128 * width, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        )
        return OpenVLAOFTConfig(
            vision=(dino, siglip), text=text, num_images=num_images, use_proprio=use_proprio,
            proprio_dim=8, pad_token_id=TINY_BASE_VOCAB, bos_token_id=1, stop_token_id=2,
            empty_token_id=TINY_EMPTY_TOKEN_ID, image_pipeline="resize", vision_backbone_id="tiny-dinosiglip",
            llm_backbone_id="tiny-llama", chunk_len=chunk_len,
        )
