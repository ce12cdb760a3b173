"""GRPO outcome advantage and the veRL-signature layer (vlarl_fast.compat.verl)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlarl_fast.compat import verl
from vlarl_fast.kernels import grpo_outcome_advantage


def _loop_oracle(scores, index, epsilon, norm):
    """veRL's per-group loop: groups of one get mean 0 and std 1, std is unbiased."""
    groups = {}
    for i, key in enumerate(index):
        groups.setdefault(key, []).append(float(scores[i]))
    out = []
    for i, key in enumerate(index):
        vals = torch.tensor(groups[key], dtype=torch.float64)
        mean, std = (0.0, 1.0) if len(vals) == 1 else (vals.mean().item(), vals.std().item())
        out.append((float(scores[i]) - mean) / (std + epsilon) if norm else float(scores[i]) - mean)
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), n_groups=st.integers(1, 12),
       binary=st.booleans(), norm=st.booleans(), epsilon=st.sampled_from([1e-6, 1e-3, 0.1]))
def test_advantage_matches_per_group_loop(seed, n, n_groups, binary, norm, epsilon):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 2, (n,), generator=g).double() if binary else torch.randn(n, generator=g, dtype=torch.float64)
    index = torch.randint(0, n_groups, (n,), generator=g)
    adv = grpo_outcome_advantage(rewards, index, epsilon=epsilon, norm_by_std=norm)
    expected = _loop_oracle(rewards, index.tolist(), epsilon, norm)
    # constant groups: (r - mean) is 0 up to rounding of the mean, divided by epsilon
    assert torch.allclose(adv, expected, rtol=1e-9, atol=1e-9 / epsilon)


def test_advantage_success_failure_group_and_errors():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    adv = grpo_outcome_advantage(rewards, torch.tensor([0, 0, 0, 0, 1, 1]))
    # group 0: mean 0.25, unbiased std 0.5; group 1: all equal -> 0
    assert torch.allclose(adv[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5)
    assert (adv[4:] == 0).all()
    with pytest.raises(ValueError, match="group_ids"):
        grpo_outcome_advantage(rewards, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="rewards"):
        grpo_outcome_advantage(torch.tensor([1, 0]), torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="group_ids"):
        grpo_outcome_advantage(rewards, torch.zeros(6))


def test_verl_grpo_outcome_advantage_with_string_uids():
    rewards = torch.zeros(5, 4)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5])
    mask = torch.ones(5, 4)
    mask[1, 3] = 0
    index = np.array(["u1", "u1", "u2", "u2", "u3"], dtype=object)
    adv, ret = verl.compute_grpo_outcome_advantage(rewards, mask, index)
    expected = _loop_oracle(rewards.sum(-1), list(index), 1e-6, True).float()
    assert torch.allclose(adv, expected[:, None] * mask, atol=1e-6)
    assert torch.equal(adv, ret)
    assert adv[1, 3] == 0


@pytest.mark.parametrize("mode", verl.AGG_MODES)
def test_verl_agg_loss_modes(mode):
    g = torch.Generator().manual_seed(5)
    loss_mat = torch.randn(4, 7, generator=g, dtype=torch.float64)
    mask = (torch.rand(4, 7, generator=g) < 0.7).double()
    mask[:, 0] = 1
    got = verl.agg_loss(loss_mat, mask, mode)
    # veRL 0.9.1 (every row has a valid token here): token-mean divides by sum(mask) without eps,
    # seq-mean-token-mean each row by its count + 1e-8, seq-mean-token-sum-norm is the seq-mean of
    # the row sums / L (older veRL: sum / L). tests/compat/test_verl_compat.py: against veRL itself.
    if mode == "token-mean":
        want = (loss_mat * mask).sum() / mask.sum()
    elif mode == "seq-mean-token-mean":
        want = ((loss_mat * mask).sum(-1) / (mask.sum(-1) + 1e-8)).mean()
    elif mode == "seq-mean-token-sum":
        want = (loss_mat * mask).sum(-1).mean()
    elif mode == "token-sum":
        want = (loss_mat * mask).sum()
    else:
        want = (loss_mat * mask).sum(-1).mean() / 7
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        verl.agg_loss(loss_mat, mask, "token-mean-unbiased")  # not a veRL 0.9.1 mode


def test_verl_policy_loss_requires_clip_ranges():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="cliprange"):
        verl.compute_policy_loss(x, x, x, x)
    with pytest.raises(ValueError, match="clip_ratio_c"):
        verl.compute_policy_loss(x, x, x, x, cliprange=0.2, clip_ratio_c=1.0)


def test_verl_logprobs_and_entropy_from_logits():
    g = torch.Generator().manual_seed(6)
    logits = (torch.randn(2, 5, 11, generator=g) * 3).requires_grad_()
    labels = torch.randint(0, 11, (2, 5), generator=g)
    lp = verl.logprobs_from_logits(logits, labels)
    want = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
    assert lp.shape == (2, 5) and torch.allclose(lp.double(), want, atol=1e-5)
    ent = verl.entropy_from_logits(logits)
    p = torch.softmax(logits.double(), -1)
    assert torch.allclose(ent.double(), -(p * p.log()).sum(-1), atol=1e-5)
    (lp.sum() + ent.sum()).backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="labels"):
        verl.logprobs_from_logits(logits, labels[:, :3])
