"""Recipes load, overrides apply, and bad values name the field."""

from __future__ import annotations

import pytest

from vlarl_fast.recipes import load_config


def test_default_recipe_and_overrides():
    cfg = load_config("builtin_cpu", ["grpo.lr=1e-5", "env.tasks=[touch_red]", "eval.greedy=false"])
    assert cfg.grpo.lr == 1e-5 and cfg.env.tasks == ["touch_red"] and cfg.eval.greedy is False
    assert cfg.grpo.group_size == 8 and cfg.grpo.temperature == 1.6
    assert (cfg.grpo.clip_low, cfg.grpo.clip_high) == (0.2, 0.28)
    assert load_config("builtin_learn").grpo.iterations > cfg.grpo.iterations


@pytest.mark.parametrize("override, message", [
    ("grpo.lr=-1", "grpo.lr"),
    ("grpo.lr=abc", "grpo.lr"),
    ("grpo.nope=1", "grpo.nope"),
    ("nosection.x=1", "nosection"),
    ("env.num_envs=12", "env.num_envs"),
    ("env.tasks=[fly_away]", "env.tasks"),
    ("env.backend=gpu", "env.backend"),
    ("grpo.group_size=1", "grpo.group_size"),
    ("grpo.micro_batch_observations=0", "grpo.micro_batch_observations"),
    ("grpo.micro_batch_size=4", "grpo.micro_batch_observations"),  # removed: the error names its successor
    ("grpo.param_dtype=float16", "grpo.param_dtype"),
    ("grpo.cpu_offload=maybe", "grpo.cpu_offload"),
    ("grpo.gradient_checkpointing=2", "grpo.gradient_checkpointing"),
    ("grpo.recompute_old_logp=yes please", "grpo.recompute_old_logp"),
    ("policy.patch_size=0", "policy.patch_size"),
    ("policy.patch_size=5", "policy.image_size"),  # 32 px is not cut into 5 px patches
    ("policy.width=0", "policy.width"),
    ("policy.chunk_len=0", "policy.chunk_len"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_config("builtin_cpu", [override])


def test_unknown_recipe_lists_available():
    with pytest.raises(FileNotFoundError, match="builtin_cpu"):
        load_config("no_such_recipe")


def test_patch_size_width_and_chunk_len_reach_the_policy_and_its_checkpoint(tmp_path):
    """`policy.image_size=64 policy.patch_size=8 policy.width=2 policy.chunk_len=16`: the tiny towers
    see the 64 px frame in as many tokens as 32 px at patch 4, every width is doubled, the policy
    samples chunks of 16 actions, and a training checkpoint of that policy loads back with the same
    shapes and weights."""
    import numpy as np
    import torch

    from vlarl_fast.rl import checkpoint
    from vlarl_fast.rl.distributed import DistInfo
    from vlarl_fast.rl.policy_setup import build_policy, tiny_shape

    cfg = load_config("libero_learn", ["policy.image_size=64", "policy.patch_size=8", "policy.width=2",
                                       "policy.chunk_len=16"])
    policy = build_policy(cfg.policy.image_size, 0, use_proprio=True, stats_key="libero_goal", **tiny_shape(cfg))
    default = build_policy(32, 0, use_proprio=True, stats_key="libero_goal")
    for tower, base in zip(policy.config.vision, default.config.vision):
        assert (tower.image_size, tower.patch_size) == (64, 8)
        assert tower.num_patches == base.num_patches == 64
        assert (tower.embed_dim, tower.mlp_hidden_dim) == (2 * base.embed_dim, 2 * base.mlp_hidden_dim)
    assert policy.config.text.hidden_size == 2 * default.config.text.hidden_size
    assert (policy.config.chunk_len, default.config.chunk_len) == (16, 8)
    sample = policy.sample_actions(np.zeros((2, 1, 64, 64, 3), np.uint8), ["put the bowl on the stove"] * 2,
                                   np.zeros((2, 8), np.float32), greedy=True)
    assert tuple(sample.actions.shape) == (2, 16, 7)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    checkpoint.save_checkpoint(tmp_path, 1, policy, opt, DistInfo(), policy_template=policy, extra={"history": []})
    again = build_policy(32, 1, str(tmp_path / "checkpoints" / "step_000001"))
    assert again.config.vision == policy.config.vision and again.config.text == policy.config.text
    assert again.config.chunk_len == 16
    assert all(torch.equal(again.state_dict()[k], v) for k, v in policy.state_dict().items())


@pytest.mark.parametrize("key", ["policy.image_size=64", "policy.patch_size=8", "policy.width=2",
                                 "policy.chunk_len=16"])
def test_tiny_policy_shape_keys_are_refused_with_a_checkpoint(key):
    """A LIBERO recipe that starts from a checkpoint takes the policy's shape from its config."""
    with pytest.raises(ValueError, match=rf"{key.split('=')[0]}.*the checkpoint's config fixes it"):
        load_config("libero_goal", ["policy.init=/nonexistent/checkpoint", key])
