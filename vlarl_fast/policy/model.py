"""OpenVLA-OFT with the discrete action-token head and parallel decoding (SimpleVLA-RL's policy).

Sequence per sample (one LM forward yields all 56 action distributions: config.chunk_len = 8 steps
x 7 dims, OpenVLA-OFT's LIBERO chunk; "56" below stands for chunk_len * 7):

    [BOS] [vision tokens: num_images * 256 patches (+1 proprio)] [prompt body, left-padded]
    [56 action positions, input embedding = 0] [STOP </s>]

Attention is bidirectional over all non-pad tokens (OpenVLA-OFT's patched Llama: `is_causal=False`
with a key-padding mask); position ids count only real tokens, so padding anywhere is equivalent
to SimpleVLA-RL's right padding. As in OpenVLA-OFT training (`logits[:, num_patches:-1]` against
`labels[:, 1:]`), action token k is predicted at the position before its slot: the last prompt token
for k = 0, action slot k - 1 otherwise. Those hidden states go through the LM head's action-bin rows
only (`vlarl_fast.kernels.action_logprob`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from vlarl_fast.policy.action_tokenizer import ActionDetokenizer, resolve_unnorm_key, validate_statistics
from vlarl_fast.policy.config import OpenVLAOFTConfig
from vlarl_fast.policy.logprob import action_bin_logits, action_bin_logprob
from vlarl_fast.policy.processor import ModelImages, Observation, OpenVLAProcessor, PromptBatch
from vlarl_fast.policy.projector import FusedMLPProjector, ProprioProjector
from vlarl_fast.policy.tokenizer import PromptTokenizer
from vlarl_fast.policy.vision import FusedVisionBackbone


@dataclass
class ActionSample:
    """Result of `OpenVLAOFT.sample_actions`.

    tokens: [B, 56] int64 bin indices in 0..255 (token id = config.bin_start + index; the index is
            the position inside SimpleVLA-RL's `logits[..., -320:-64]`), ordered step-major
            (8 steps x 7 dims).
    logp:   [B, 56] float32 log-prob of each token under the temperature-scaled bin softmax.
    actions:[B, 8, 7] float32 un-normalised actions, gripper already mapped to {-1, +1} (LIBERO).
    obs:    the preprocessed observation (pixels, prompt ids/mask, normalised proprio) that
            `action_logprob` accepts directly.
    """

    tokens: torch.Tensor
    logp: torch.Tensor
    actions: torch.Tensor
    obs: Observation


class OpenVLAOFT(nn.Module):
    def __init__(self, config: OpenVLAOFTConfig, *, tokenizer: PromptTokenizer | None = None,
                 norm_stats: Mapping[str, Any] | None = None, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        self.vision_backbone = FusedVisionBackbone(config.vision[0], config.vision[1])
        self.projector = FusedMLPProjector(config.vision_dim, config.text.hidden_size)
        self.proprio_projector = ProprioProjector(config.proprio_dim, config.text.hidden_size) if config.use_proprio else None
        llama_cfg = config.text.to_llama_config(config.pad_token_id, config.bos_token_id, config.stop_token_id, attn_implementation)
        self.language_model = LlamaForCausalLM(llama_cfg)
        for layer in self.language_model.model.layers:
            layer.self_attn.is_causal = False
        self.tokenizer = tokenizer
        self.source_dir = None  # the checkpoint directory this model was loaded from, if any
        self.processor = OpenVLAProcessor(config, tokenizer)
        self.norm_stats: dict[str, Any] = dict(norm_stats or {})
        if self.norm_stats:
            validate_statistics(self.norm_stats, config.action_dim)
        self.detokenizer = ActionDetokenizer(config.n_action_bins, config.chunk_len, config.action_dim, config.gripper_mode)

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        """Recompute ViT blocks and Llama layers in backward instead of keeping their activations."""
        self.vision_backbone.featurizer.gradient_checkpointing = enabled
        self.vision_backbone.fused_featurizer.gradient_checkpointing = enabled
        lm = self.language_model
        if enabled:
            kwargs = {"use_reentrant": False}
            if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5.x name
                lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        elif hasattr(lm, "activation_checkpointing_disable"):
            lm.activation_checkpointing_disable()
        else:
            lm.gradient_checkpointing_disable()

    # ---- observation handling ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.projector.fc1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.fc1.weight.dtype

    def _proprio_stats(self, unnorm_key: str | None):
        if not self.config.use_proprio or not self.norm_stats:
            return None
        entry = self.norm_stats[resolve_unnorm_key(self.norm_stats, unnorm_key)]
        return entry.get("proprio")

    def prepare(self, images: Any, prompt: Sequence[str] | PromptBatch, proprio: Any = None, *,
                unnorm_key: str | None = None) -> Observation:
        """Preprocess raw uint8 frames `[B, n, H, W, 3]` (or pass preprocessed pixels) on the model's device."""
        return self.processor(images, prompt, proprio, proprio_stats=self._proprio_stats(unnorm_key),
                              device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def model_images(self, images: Any) -> ModelImages:
        """Raw uint8 frames `[B, n, H, W, 3]` -> the model's input images (image pipeline and crop
        applied, uint8, on the model's device). Pass them wherever frames are accepted."""
        return ModelImages(self.processor.model_images(images, self.device))

    # ---- the forward -------------------------------------------------------------------------
    def action_hidden_states(self, obs: Observation) -> torch.Tensor:
        """Final (normed) LM hidden states that predict the 56 action tokens, `[B, 56, hidden]`
        (sequence positions first_action_slot - 1 ... first_action_slot + 54)."""
        cfg = self.config
        emb = self.language_model.model.embed_tokens
        pixels = obs.pixel_values.to(self.dtype)
        vision = self.projector(self.vision_backbone(pixels))
        if self.proprio_projector is not None:
            if obs.proprio is None:
                raise ValueError("obs.proprio: required by this model (use_proprio=True)")
            vision = torch.cat([vision, self.proprio_projector(obs.proprio.to(self.dtype)).unsqueeze(1)], dim=1)
        ids = obs.prompt.input_ids
        b = ids.shape[0]
        dev = ids.device
        bos = emb(torch.full((b, 1), cfg.bos_token_id, dtype=torch.long, device=dev))
        stop = emb(torch.full((b, 1), cfg.stop_token_id, dtype=torch.long, device=dev))
        actions = torch.zeros(b, cfg.num_action_tokens, bos.shape[-1], dtype=bos.dtype, device=dev)
        embeds = torch.cat([bos, vision.to(bos.dtype), emb(ids), actions, stop], dim=1)

        prompt_mask = obs.prompt.attention_mask.bool()
        ones = lambda n: torch.ones(b, n, dtype=torch.bool, device=dev)  # noqa: E731
        valid = torch.cat([ones(1 + vision.shape[1]), prompt_mask, ones(cfg.num_action_tokens + 1)], dim=1)
        position_ids = (valid.long().cumsum(1) - 1).clamp(min=0)
        attention_mask = None if bool(prompt_mask.all()) else valid.long()
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=attention_mask,
                                           position_ids=position_ids, use_cache=False).last_hidden_state
        # Causal-LM shift, as OpenVLA(-OFT) trains it: action k is read at the position *before* its
        # slot (the last prompt token '▁' for k = 0, slot k-1 otherwise); slot 55's output is unused.
        start = vision.shape[1] + ids.shape[1]
        return hidden[:, start : start + cfg.num_action_tokens]

    def _head(self) -> torch.Tensor:
        return self.language_model.lm_head.weight

    # ---- rollout -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_actions(self, images: Any, instructions: Sequence[str] | PromptBatch, proprio: Any = None, *,
                       temperature: float = 1.6, greedy: bool = False, generator: torch.Generator | None = None,
                       unnorm_key: str | None = None, uniform: torch.Tensor | None = None) -> ActionSample:
        """Sample (or argmax) all 56 action tokens in one forward pass; see `ActionSample`.

        `uniform` (optional): the sampling's uniform draws, rows of `sampling_noise` (then
        `generator` is not used), so that a batch split into parts samples what it samples whole."""
        cfg = self.config
        key = resolve_unnorm_key(self.norm_stats, unnorm_key)
        obs = self.prepare(images, instructions, proprio, unnorm_key=key)
        hidden = self.action_hidden_states(obs)
        logits = action_bin_logits(hidden, self._head(), temperature=temperature, bin_start=cfg.bin_start, bin_end=cfg.bin_end)
        if greedy:
            tokens = logits.argmax(dim=-1)
        else:  # Gumbel-max: an exact sample of softmax(logits), one fused op on any device
            if uniform is None:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
            elif tuple(uniform.shape) != tuple(logits.shape):
                raise ValueError(f"uniform must have shape {tuple(logits.shape)}, got {tuple(uniform.shape)}")
            uniform = uniform.to(device=logits.device, dtype=torch.float32)
            gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(torch.float32).tiny, max=1.0 - 2**-24)))
            tokens = (logits + gumbel).argmax(dim=-1)
        logp = action_bin_logprob(hidden, self._head(), tokens, temperature=temperature,
                                  bin_start=cfg.bin_start, bin_end=cfg.bin_end)
        actions = self.detokenizer.decode(tokens, self.norm_stats[key]["action"])
        return ActionSample(tokens=tokens, logp=logp.float(), actions=actions, obs=obs)

    def sampling_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform draws for `sample_actions(..., uniform=rows)`: [batch, num_action_tokens,
        n_action_bins] float32, drawn as sample_actions draws them for a batch of that size."""
        cfg = self.config
        device = generator.device if generator is not None else next(self.parameters()).device
        return torch.rand((batch, cfg.num_action_tokens, cfg.n_action_bins), generator=generator,
                          device=device, dtype=torch.float32)

    # ---- training ----------------------------------------------------------------------------
    def action_logprob(self, images: Any, prompt: Sequence[str] | PromptBatch | None, tokens: torch.Tensor,
                       proprio: Any = None, *, temperature: float = 1.6, return_entropy: bool = False,
                       unnorm_key: str | None = None):
        """Log-prob `[B, 56]` (and entropy) of the given bin indices, differentiable.

        `images` is raw uint8 `[B, n, H, W, 3]`, preprocessed pixels `[B, n, 6, S, S]`, or an
        `Observation` (then `prompt` and `proprio` must be None)."""
        if isinstance(images, Observation):
            if prompt is not None or proprio is not None:
                raise ValueError("prompt/proprio: pass None when images is an Observation (it already holds them)")
            obs = images
        else:
            if prompt is None:
                raise ValueError("prompt: instructions or a PromptBatch are required unless images is an Observation")
            obs = self.prepare(images, prompt, proprio, unnorm_key=unnorm_key)
        cfg = self.config
        expected = (obs.pixel_values.shape[0], cfg.num_action_tokens)
        if tuple(tokens.shape) != expected:
            raise ValueError(f"tokens must have shape {expected}, got {tuple(tokens.shape)}")
        hidden = self.action_hidden_states(obs)
        return action_bin_logprob(hidden, self._head(), tokens.to(hidden.device), temperature=temperature,
                                  bin_start=cfg.bin_start, bin_end=cfg.bin_end, return_entropy=return_entropy)

    def forward(self, images: Any, prompt: Sequence[str] | PromptBatch | None, tokens: torch.Tensor, proprio: Any = None, *,
                temperature: float = 1.6, return_entropy: bool = False, unnorm_key: str | None = None):
        """Same as `action_logprob`; call the module (not the method) under FSDP/DDP wrappers."""
        return self.action_logprob(images, prompt, tokens, proprio, temperature=temperature,
                                   return_entropy=return_entropy, unnorm_key=unnorm_key)
