"""vlarl_fast.compat.simplevla against SimpleVLA-RL's own code, restated below from
PRIME-RL/SimpleVLA-RL (verl/trainer/ppo/core_algos.py, verl/utils/torch_functional.py; the
callers in verl/workers/actor/dp_rob.py and verl/trainer/ppo/ray_trainer.py), on fresh random
inputs: all-masked rows and batches, |log ratio| up to 50, groups of one, ties, masked garbage."""

from __future__ import annotations

import inspect
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.kernels.conftest import requires_triton
from vlarl_fast.compat import simplevla

SEEDS = (0, 1, 2)


# ---- SimpleVLA-RL's code, restated (names prefixed with svla_) ----------------------------------

def svla_masked_mean(values, mask, axis=None):
    if (mask == False).all():  # noqa: E712  (as written in SimpleVLA-RL)
        return (values * mask).sum(axis=axis)
    else:
        return (values * mask).sum(axis=axis) / mask.sum(axis=axis)


def svla_compute_policy_loss(old_log_prob, log_prob, advantages, eos_mask, clip_ratio_high,
                             clip_ratio_low):
    negative_approx_kl = log_prob - old_log_prob
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = svla_masked_mean(-negative_approx_kl, eos_mask)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    pg_loss = svla_masked_mean(torch.max(pg_losses, pg_losses2), eos_mask)
    pg_clipfrac = svla_masked_mean(torch.gt(pg_losses2, pg_losses).float(), eos_mask)
    return pg_loss, pg_clipfrac, ppo_kl


def svla_compute_grpo_outcome_advantage(token_level_rewards, eos_mask, index, epsilon=1e-6):
    response_length = token_level_rewards.shape[-1]
    scores = token_level_rewards.sum(dim=-1)
    id2score = defaultdict(list)
    id2mean = {}
    id2std = {}
    with torch.no_grad():
        bsz = scores.shape[0]
        for i in range(bsz):
            id2score[index[i]].append(scores[i])
        for idx in id2score:
            if len(id2score[idx]) == 1:
                id2mean[idx] = torch.tensor(0.0)
                id2std[idx] = torch.tensor(1.0)
            elif len(id2score[idx]) > 1:
                id2mean[idx] = torch.mean(torch.tensor(id2score[idx]))
                id2std[idx] = torch.std(torch.tensor([id2score[idx]]))
            else:
                raise ValueError(f"no score in prompt index: {idx}")
        for i in range(bsz):
            scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + epsilon)
        scores = scores.unsqueeze(-1).tile([1, response_length]) * eos_mask
    return scores, scores


def svla_logprobs_from_logits_naive(logits, labels):  # its path without flash-attn
    logp = F.log_softmax(logits, dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def svla_entropy_from_logits(logits):
    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


# ---- inputs -------------------------------------------------------------------------------------

def _policy_inputs(seed, dtype, n_seq=6, seq_len=56, log_ratio_scale=0.3):
    """dp_rob.py's layout: mask = steps < finish_step (bool, a prefix per row); rows 0 and 3 have
    finish_step 0 (empty sequences); a few tokens carry |log ratio| in [20, 50]."""
    g = torch.Generator().manual_seed(seed)
    log_prob = torch.randn(n_seq, seq_len, generator=g, dtype=torch.float64) * 0.5 - 1.0
    old = log_prob + torch.randn(n_seq, seq_len, generator=g, dtype=torch.float64) * log_ratio_scale
    extreme = torch.rand(n_seq, seq_len, generator=g) < 0.1
    sign = torch.where(torch.rand(n_seq, seq_len, generator=g) < 0.5, -1.0, 1.0).double()
    old = torch.where(extreme, log_prob + sign * (20 + 30 * torch.rand(n_seq, seq_len, generator=g,
                                                                        dtype=torch.float64)), old)
    adv = torch.randn(n_seq, 1, generator=g, dtype=torch.float64).expand(n_seq, seq_len).clone()
    finish = torch.randint(1, seq_len + 1, (n_seq,), generator=g)
    finish[0] = finish[min(3, n_seq - 1)] = 0
    mask = torch.arange(seq_len)[None] < finish[:, None]
    return log_prob.to(dtype), old.to(dtype), adv.to(dtype), mask


def _run_policy_loss(fn, old, log_prob, adv, mask, high=0.28, low=0.2):
    x = log_prob.detach().clone().requires_grad_()
    out = fn(old_log_prob=old, log_prob=x, advantages=adv, eos_mask=mask, clip_ratio_high=high,
             clip_ratio_low=low)
    out[0].backward()
    return out, x.grad


# ---- compute_policy_loss --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_policy_loss_three_values_and_gradient_equal_simplevla(seed, dtype):
    inputs = _policy_inputs(seed, dtype)
    assert (inputs[0] - inputs[1]).abs().max() > 20  # beyond veRL's clamp: SimpleVLA-RL has none
    log_prob, old, adv, mask = inputs
    got, got_grad = _run_policy_loss(simplevla.compute_policy_loss, old, log_prob, adv, mask)
    want, want_grad = _run_policy_loss(svla_compute_policy_loss, old, log_prob, adv, mask)
    assert isinstance(got, tuple) and len(got) == 3
    # the same torch ops in the same order (the all-False test moved from the host into a
    # torch.where whose divisor is then 1): bit-identical values and gradients
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0)
    assert torch.isfinite(got[0]) and (got_grad[0] == 0).all() and (got_grad[3] == 0).all()


@pytest.mark.parametrize("case", ["all_masked", "one_token", "masked_garbage", "exp_overflow"])
def test_policy_loss_edge_cases_equal_simplevla(case):
    log_prob, old, adv, mask = _policy_inputs(5, torch.float32, n_seq=4, seq_len=8)
    if case == "all_masked":  # SimpleVLA-RL returns the bare masked sum: 0, with zero gradient
        mask = torch.zeros_like(mask)
    elif case == "one_token":
        mask = torch.zeros_like(mask)
        mask[1, 0] = True
    elif case == "masked_garbage":  # propagates, as in SimpleVLA-RL (0 * inf = NaN)
        mask[1, :4], mask[1, 4:] = True, False
        old[1, 6] = float("nan")
        adv[1, 7] = float("inf")
    else:  # log ratio 100: exp overflows fp32 to inf in both
        mask[2, :] = True
        old[2, 2] = log_prob[2, 2] - 100.0
    got, got_grad = _run_policy_loss(simplevla.compute_policy_loss, old, log_prob, adv, mask)
    want, want_grad = _run_policy_loss(svla_compute_policy_loss, old, log_prob, adv, mask)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0, equal_nan=True)
    if case == "all_masked":
        assert got[0] == 0 and (got_grad == 0).all()
    if case == "masked_garbage":
        assert torch.isnan(got[0])


@pytest.mark.parametrize("mask_kind", ["bool", "float", "all_false"])
def test_masked_mean_with_axis_equals_simplevla(mask_kind):
    g = torch.Generator().manual_seed(3)
    values = torch.randn(4, 5, generator=g)
    mask = torch.rand(4, 5, generator=g) < 0.6
    mask[2] = False  # a row without valid tokens: 0 / 0 = NaN along axis -1, in both
    mask[0, 0] = True
    if mask_kind == "float":
        mask = mask.float()
    elif mask_kind == "all_false":
        mask = torch.zeros_like(mask)
    for axis in (None, -1, 0):
        torch.testing.assert_close(simplevla.masked_mean(values, mask, axis),
                                   svla_masked_mean(values, mask, axis), rtol=0, atol=0,
                                   equal_nan=True)


def test_signatures_are_simplevlas():
    params = lambda f: list(inspect.signature(f).parameters)  # noqa: E731
    assert params(simplevla.compute_policy_loss) == params(svla_compute_policy_loss)
    assert params(simplevla.compute_grpo_outcome_advantage) == \
        params(svla_compute_grpo_outcome_advantage)
    assert params(simplevla.masked_mean) == ["values", "mask", "axis"]
    assert params(simplevla.logprobs_from_logits) == ["logits", "labels"]
    assert params(simplevla.entropy_from_logits) == ["logits"]
    assert params(simplevla.compute_entropy_loss) == ["logits", "eos_mask"]
    assert params(simplevla.kl_penalty) == ["logprob", "ref_logprob", "kl_penalty"]


# ---- compute_grpo_outcome_advantage ---------------------------------------------------------------

def _adv_inputs(seed, dtype, kind, n=24, seq_len=7):
    """ray_trainer.py's layout: reward on one token per row, uid strings in a numpy array,
    groups of 1..8 rows; a mask with empty rows."""
    g = torch.Generator().manual_seed(seed)
    group_of_row = torch.randint(0, 9, (n,), generator=g)
    group_of_row[:3] = torch.tensor([100, 101, 101])  # a group of one, a pair
    index = np.array([f"uid-{int(k)}" for k in group_of_row], dtype=object)
    if kind == "binary":  # SimpleVLA-RL's success reward: many tied and constant groups
        score = torch.randint(0, 2, (n,), generator=g).to(dtype)
    elif kind == "dyadic_ties":  # ties with exactly representable means
        score = torch.randint(0, 3, (n,), generator=g).to(dtype) / 4
    else:
        score = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
    rewards = torch.zeros(n, seq_len, dtype=dtype)
    rewards[torch.arange(n), torch.randint(0, seq_len, (n,), generator=g)] = score
    mask = torch.arange(seq_len)[None] < torch.randint(0, seq_len + 1, (n,), generator=g)[:, None]
    return rewards, mask, index


# continuous scores: the group mean/std are summed in another order than SimpleVLA-RL's
# torch.mean/torch.std over a Python list (a few ulp of the scores); divided by std ~ 1 they stay
# a few ulp: 1e-5 for fp32 (ulp 1.2e-7 at |s| <= 4), 1e-12 for fp64. Binary and dyadic scores
# make every sum exact, so tied groups give exactly 0 in both and the rest agree to rounding.
ADV_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("kind", ["binary", "dyadic_ties", "continuous"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grpo_advantage_equals_simplevla(kind, dtype):
    for seed in SEEDS:
        rewards, mask, index = _adv_inputs(seed, dtype, kind)
        got = simplevla.compute_grpo_outcome_advantage(token_level_rewards=rewards, eos_mask=mask,
                                                       index=index)
        want = svla_compute_grpo_outcome_advantage(rewards.clone(), mask, index)
        assert len(got) == 2 and got[0] is got[1]
        assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
        torch.testing.assert_close(got[0], want[0], rtol=ADV_TOL[dtype], atol=ADV_TOL[dtype])
        # the group of one (row 0): bit-identical, r / float32(1 + epsilon) even in fp64
        torch.testing.assert_close(got[0][0], want[0][0], rtol=0, atol=0)
        assert (got[0][~mask] == 0).all()


def test_grpo_advantage_non_dyadic_ties_within_rounding_bound():
    """A group whose scores are all 0.1: the mean is 0.1 only up to rounding, and SimpleVLA-RL
    divides that rounding by std + epsilon = ~1e-6. Bound: |diff| <= n ulp(0.1) / epsilon (fp64:
    8 x 1.4e-17 / 1e-6 ~ 1e-10)."""
    rewards = torch.full((8, 1), 0.1, dtype=torch.float64)
    index = np.array(["a"] * 8, dtype=object)
    mask = torch.ones(8, 1, dtype=torch.bool)
    got, _ = simplevla.compute_grpo_outcome_advantage(rewards, mask, index)
    want, _ = svla_compute_grpo_outcome_advantage(rewards.clone(), mask, index)
    torch.testing.assert_close(got, want, rtol=0, atol=8 * np.spacing(0.1) / 1e-6)


def test_grpo_advantage_index_forms_and_epsilon():
    rewards, mask, index = _adv_inputs(9, torch.float64, "continuous")
    as_int = np.array([int(s.split("-")[1]) for s in index])
    want, _ = svla_compute_grpo_outcome_advantage(rewards.clone(), mask, index, epsilon=0.1)
    for idx in (as_int, list(index), torch.from_numpy(as_int)):
        got, _ = simplevla.compute_grpo_outcome_advantage(rewards, mask, idx, 0.1)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="eos_mask"):
        simplevla.compute_grpo_outcome_advantage(rewards, mask[:, :3], index)


# ---- logprobs / entropy ---------------------------------------------------------------------------

def _bin_logits(seed, dtype, temperature=1.6):
    """dp_rob.py: logits[..., -256-64:-64] / temperature, labels = responses - (32000 - 256)."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(2, 14, 32000 // 100, generator=g) * 3  # a narrow stand-in vocabulary
    logits = (torch.randn(2, 14, 256, generator=g) * 3).div(temperature)
    labels = torch.randint(0, 256, (2, 14), generator=g)
    return logits.to(dtype), labels, full


# fp32 sums of 256 terms of magnitude <= ~15 (lse, p x): the kernel's log-softmax / -sum p log p
# and SimpleVLA-RL's logsumexp - sum p x round differently by at most a few 1e-6 here; 2e-5 leaves
# margin. fp64: 1e-12.
LOGIT_TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype,backend", [
    (torch.float32, "torch"), (torch.float64, "torch"), (torch.bfloat16, "torch"),
    pytest.param(torch.float32, "triton", marks=requires_triton),
    pytest.param(torch.bfloat16, "triton", marks=requires_triton)])
def test_logprobs_and_entropy_equal_simplevla(dtype, backend, monkeypatch):
    monkeypatch.setenv("VLARL_KERNEL_BACKEND", backend)  # triton: interpreted on CPU
    logits, labels, _ = _bin_logits(4, dtype)
    x = logits.detach().clone().requires_grad_()
    logp = simplevla.logprobs_from_logits(x, labels)
    ent = simplevla.entropy_from_logits(x)
    (logp.sum() + 0.5 * ent.sum()).backward()
    # bf16: SimpleVLA-RL runs these under a bf16 autocast, where softmax / log_softmax /
    # logsumexp compute in fp32 on the bf16 values: its numbers are the fp32 ones of logits.float()
    ref_in = (logits.float() if dtype == torch.bfloat16 else logits).detach().requires_grad_()
    want_logp = svla_logprobs_from_logits_naive(ref_in, labels)
    want_ent = svla_entropy_from_logits(ref_in)
    (want_logp.sum() + 0.5 * want_ent.sum()).backward()
    tol = LOGIT_TOL.get(dtype, LOGIT_TOL[torch.float32])
    assert logp.dtype == want_logp.dtype and ent.dtype == want_ent.dtype
    torch.testing.assert_close(logp, want_logp, rtol=tol, atol=tol)
    torch.testing.assert_close(ent, want_ent, rtol=tol, atol=tol)
    grad_tol = 2.0 ** -8 if dtype == torch.bfloat16 else tol  # bf16 gradient: rounded once
    torch.testing.assert_close(x.grad.float(), ref_in.grad.float(), rtol=grad_tol, atol=grad_tol)
    both = simplevla.logprobs_and_entropy_from_logits(logits, labels)
    torch.testing.assert_close(both[0], logp.detach(), rtol=0, atol=0)
    torch.testing.assert_close(both[1], ent.detach(), rtol=0, atol=0)


def test_logprobs_and_entropy_full_vocabulary_equal_simplevla():
    """More bins than the fused kernel takes (its "openvla" path slices no bins): plain torch."""
    _, _, full = _bin_logits(6, torch.float32)
    full = torch.cat([full] * 4, dim=-1)  # 1280 > 1024 bins
    labels = torch.randint(0, full.shape[-1], full.shape[:-1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(simplevla.logprobs_from_logits(full, labels),
                               svla_logprobs_from_logits_naive(full, labels), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(simplevla.entropy_from_logits(full), svla_entropy_from_logits(full),
                               rtol=2e-5, atol=2e-5)
    both = simplevla.logprobs_and_entropy_from_logits(full, labels)
    torch.testing.assert_close(both[1], simplevla.entropy_from_logits(full), rtol=0, atol=0)


def test_entropy_loss_and_kl_penalty_equal_simplevla():
    logits, _, _ = _bin_logits(7, torch.float32)
    mask = torch.arange(14)[None] < torch.tensor([[0], [5]])  # an empty row
    want = svla_masked_mean(svla_entropy_from_logits(logits), mask)
    torch.testing.assert_close(simplevla.compute_entropy_loss(logits, mask), want,
                               rtol=2e-5, atol=2e-5)
    assert simplevla.compute_entropy_loss(logits, torch.zeros_like(mask)) == 0
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(simplevla.kl_penalty(a, b, "kl"), a - b)
    torch.testing.assert_close(simplevla.kl_penalty(a, b, "abs"), (a - b).abs())
    torch.testing.assert_close(simplevla.kl_penalty(a, b, "mse"), 0.5 * (a - b).square())
    for mode in ("full", "low_var_kl"):
        with pytest.raises(NotImplementedError):
            simplevla.kl_penalty(a, b, mode)
