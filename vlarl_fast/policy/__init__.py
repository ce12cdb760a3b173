"""OpenVLA-OFT policy (SimpleVLA-RL's discrete action-token head, parallel decoding).

Public API:
    OpenVLAOFTConfig.openvla_7b() / .tiny(num_images=1, use_proprio=False, image_size=16)
    OpenVLAOFT(config, tokenizer=None, norm_stats=None)
        .sample_actions(images, instructions, proprio=None, *, temperature=1.6, greedy=False,
                        generator=None, unnorm_key=None) -> ActionSample(tokens, logp, actions, obs)
        .action_logprob(images | Observation, prompt | None, tokens, proprio=None, *,
                        temperature=1.6, return_entropy=False, unnorm_key=None)
    .model_images(frames) -> ModelImages (the image pipeline once; accepted wherever frames are)
    save_pretrained(model, dir, stats=None, tokenizer=None, *, max_shard_size="5GB")
    load_pretrained(dir, *, dtype=torch.bfloat16, device="cpu", num_images=None, use_proprio=None)
"""

from vlarl_fast.policy.action_tokenizer import ActionDetokenizer, bin_centres, resolve_unnorm_key
from vlarl_fast.policy.checkpoint import (CheckpointMismatchError, CorruptCheckpointError, load_pretrained,
                                          save_pretrained)
from vlarl_fast.policy.config import OpenVLAOFTConfig, TextConfig, ViTConfig
from vlarl_fast.policy.model import ActionSample, OpenVLAOFT
from vlarl_fast.policy.processor import ModelImages, Observation, OpenVLAProcessor, PromptBatch
from vlarl_fast.policy.tokenizer import PromptTokenizer, build_tiny_tokenizer, openvla_prompt

__all__ = [
    "ActionDetokenizer",
    "ActionSample",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "ModelImages",
    "Observation",
    "OpenVLAOFT",
    "OpenVLAOFTConfig",
    "OpenVLAProcessor",
    "PromptBatch",
    "PromptTokenizer",
    "TextConfig",
    "ViTConfig",
    "bin_centres",
    "build_tiny_tokenizer",
    "load_pretrained",
    "openvla_prompt",
    "resolve_unnorm_key",
    "save_pretrained",
]
