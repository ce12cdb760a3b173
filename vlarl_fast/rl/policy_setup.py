"""The policy a run trains: an OpenVLA-OFT checkpoint (`policy.init`), or for the built-in tasks the
tiny OpenVLA-OFT preset with the built-in action space; and the cameras it sees.

Action statistics (BOUNDS_Q99 un-normalisation): OSC_POSE position deltas span [-1, 1] input units
(1 unit = 5 cm), rotation deltas are fixed to 0 (q01 = q99 = 0), the gripper command spans
[-1, 1] (no LIBERO gripper post-processing: `gripper_mode="none"`).
"""

from __future__ import annotations

import copy

import torch

from vlarl_fast.policy import OpenVLAOFT, OpenVLAOFTConfig, PromptTokenizer, load_pretrained

BUILTIN_UNNORM_KEY = "builtin_table"
BUILTIN_STATS = {
    BUILTIN_UNNORM_KEY: {
        "action": {
            "q01": [-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, -1.0],
            "q99": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "mask": [True] * 7,
        }
    }
}


def builtin_policy_config(image_size: int, use_proprio: bool = False, num_images: int = 1,
                          patch_size: int = 4, width: int = 1, chunk_len: int = 8) -> OpenVLAOFTConfig:
    # Engine frames are upright and already framed: no LIBERO rotation, no OFT centre crop.
    return OpenVLAOFTConfig.tiny(num_images=num_images, image_size=image_size, use_proprio=use_proprio,
                                 patch_size=patch_size, width=width, chunk_len=chunk_len).replace(gripper_mode="none", rotate_180=False, center_crop=False)


def tiny_stats(stats_key: str) -> dict:
    """The tiny policy's action statistics under `stats_key` (the built-in tasks' key, or a LIBERO
    suite's name: LIBERO's action space is the same OSC_POSE + gripper one; the scripted experts
    keep the gripper pointing down, so rotation deltas stay 0)."""
    return {stats_key: copy.deepcopy(BUILTIN_STATS[BUILTIN_UNNORM_KEY])}


def build_policy(image_size: int, seed: int, init: str | None = None,
                 stats_key: str = BUILTIN_UNNORM_KEY, use_proprio: bool = False, num_images: int = 1,
                 patch_size: int = 4, width: int = 1, chunk_len: int = 8) -> OpenVLAOFT:
    """A checkpoint (`init`), or the tiny preset; `use_proprio` (tiny only) adds OpenVLA-OFT's
    proprio projector, whose statistics SFT fills in from the demos' states; `num_images` (tiny
    only) is the images per observation (LIBERO: 2 = agentview and the wrist camera, as OpenVLA-OFT's
    LIBERO checkpoints take them); `patch_size`, `width` and `chunk_len` (tiny only): the side of the
    squares both vision towers cut an image into, the factor on every width and the actions per
    chunk (`OpenVLAOFTConfig.tiny`)."""
    if init:
        from pathlib import Path

        if (Path(init) / "state" / ".metadata").is_file():  # a training checkpoint (sharded weights)
            from vlarl_fast.rl.checkpoint import load_policy

            return load_policy(Path(init))
        if not (Path(init) / "config.json").is_file():
            raise FileNotFoundError(f"policy.init: {init} is not an OpenVLA-OFT checkpoint directory "
                                    "(no config.json there)")
        return load_pretrained(init, dtype=torch.float32, device="cpu")
    torch.manual_seed(seed)
    return OpenVLAOFT(builtin_policy_config(image_size, use_proprio, num_images, patch_size, width, chunk_len), tokenizer=PromptTokenizer.tiny(),
                      norm_stats=tiny_stats(stats_key))


LIBERO_CAMERAS = ("agentview", "robot0_eye_in_hand")  # OpenVLA-OFT's image order (third person, wrist)


def tiny_num_images(cameras) -> int:
    """Images per observation of the tiny preset: one per camera of env.cameras (default: agentview)."""
    return max(1, len(cameras))


def tiny_shape(cfg) -> dict:
    """`build_policy`'s tiny-preset shape arguments from a run's config (`TrainConfig`): images per
    observation (`tiny_num_images` of env.cameras), patch side, width factor and chunk length (policy.*)."""
    return {"num_images": tiny_num_images(cfg.env.cameras), "patch_size": cfg.policy.patch_size,
            "width": cfg.policy.width, "chunk_len": cfg.policy.chunk_len}


def suite_cameras(suite: str, cameras, config) -> list[str]:
    """The cameras whose frames the policy sees, in its image order: the built-in scene's one, or for
    LIBERO `cameras` (config env.cameras) or by default agentview plus the wrist camera when the
    checkpoint takes 2 images (SimpleVLA-RL's LIBERO recipe: 1 image, agentview)."""
    if suite == "builtin":
        return []
    chosen = list(cameras) or list(LIBERO_CAMERAS[: config.num_images])
    if len(chosen) != config.num_images:
        raise ValueError(f"config field env.cameras: the checkpoint takes {config.num_images} image(s) per "
                         f"observation, got cameras {chosen}")
    return chosen
