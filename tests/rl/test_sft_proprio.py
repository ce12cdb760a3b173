"""One-demo SFT with OpenVLA-OFT's proprio input and a cosine lr schedule (recipe libero_learn).

- the proprio statistics normalise every SFT state into [-1, 1] with room to spare, and give a
  dimension that never moves a unit span (no division by ~0);
- the state reaches the model: samples with the same frame and prompt whose targets differ only
  with the robot state are fitted by a proprio policy, not by one without it;
- train_sft refuses a proprio/model mismatch; the cosine schedule runs lr down to ~0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from vlarl_fast.policy.action_tokenizer import normalise_proprio
from vlarl_fast.rl.policy_setup import BUILTIN_STATS, BUILTIN_UNNORM_KEY, build_policy
from vlarl_fast.rl.sft import proprio_statistics, train_sft

KEY = "libero_goal"


def test_proprio_statistics_cover_the_states():
    rng = np.random.default_rng(np.random.SeedSequence().entropy)
    states = rng.normal(size=(500, 8)) * rng.uniform(0.01, 2.0, size=8) + rng.normal(size=8)
    states[:, 7] = 0.04  # a gripper finger that never moves
    stats = proprio_statistics(states)
    norm = normalise_proprio(torch.from_numpy(states), stats).numpy()
    assert np.isfinite(norm).all()
    inner = (states >= np.quantile(states, 0.01, axis=0)) & (states <= np.quantile(states, 0.99, axis=0))
    assert np.abs(norm[inner]).max() < 1.0 / 1.2 + 1e-6  # the 10% margin on each side
    assert stats["q99"][7] - stats["q01"][7] == pytest.approx(1.0)
    np.testing.assert_allclose(norm[:, 7], 0.0, atol=1e-7)  # OFT adds 1e-8 to the span


def _aliased_samples(n=4):
    """n samples: one frame, one prompt; each sample's 56 target bins are its own bin, which only
    its proprio state tells apart."""
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(np.repeat(rng.integers(0, 256, (1, 1, 16, 16, 3), dtype=np.uint8), n, axis=0))
    proprio = torch.from_numpy(rng.uniform(-1, 1, (n, 8)).astype(np.float32))
    bins = rng.permutation(256)[:n]
    tokens = torch.from_numpy(np.repeat(bins[:, None], 56, axis=1))
    return frames, ["put the bowl on the plate"] * n, tokens, proprio


@pytest.mark.parametrize("use_proprio", [True, False])
def test_the_state_reaches_the_model(use_proprio):
    frames, prompts, tokens, proprio = _aliased_samples()
    policy = build_policy(16, 0, stats_key=KEY, use_proprio=use_proprio)
    if use_proprio:
        policy.norm_stats[KEY]["proprio"] = proprio_statistics(proprio.numpy())
    torch.manual_seed(0)
    losses = train_sft(policy, frames, prompts, tokens, steps=150, lr=3e-3, proprio=proprio if use_proprio else None,
                       unnorm_key=KEY, lr_schedule="cosine")
    policy.eval()
    with torch.no_grad():
        got = policy.sample_actions(frames, prompts, proprio if use_proprio else None, greedy=True,
                                    unnorm_key=KEY).tokens
    accuracy = (got.cpu() == tokens).float().mean().item()
    if use_proprio:  # each sample's own targets
        assert accuracy > 0.9 and losses[-1] < 0.5, (accuracy, losses[-1])
    else:  # one input for 4 different targets: at best one of them, 1/4 of the tokens
        assert accuracy <= 0.25 + 1e-6 and losses[-1] > 1.0, (accuracy, losses[-1])


def test_mismatch_and_schedule():
    frames, prompts, tokens, proprio = _aliased_samples(2)
    plain = build_policy(16, 0, stats_key=KEY)
    with pytest.raises(ValueError, match="pass proprio exactly when the policy uses it"):
        train_sft(plain, frames, prompts, tokens, steps=1, lr=1e-3, proprio=proprio)
    with_state = build_policy(16, 0, stats_key=KEY, use_proprio=True)
    with pytest.raises(ValueError, match="pass proprio exactly when the policy uses it"):
        train_sft(with_state, frames, prompts, tokens, steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        train_sft(plain, frames, prompts, tokens, steps=1, lr=1e-3, lr_schedule="linear")
    # the statistics of one policy are its own: filling them in does not touch the defaults
    with_state.norm_stats[KEY]["proprio"] = proprio_statistics(proprio.numpy())
    assert "proprio" not in BUILTIN_STATS[BUILTIN_UNNORM_KEY]
    lrs = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
    try:
        train_sft(plain, frames, prompts, tokens, steps=10, lr=1e-2, lr_schedule="cosine")
    finally:
        handle.remove()
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] < 1e-2 * 0.03 and all(np.diff(lrs) < 0)
