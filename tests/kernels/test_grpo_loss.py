"""grpo_loss: the Triton kernel (interpreted on CPU) against the float64 PyTorch reference,
veRL's exact conventions through an independent per-token oracle, and edge cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels.conftest import KERNEL_DEVICE, assert_close_to_reference, requires_triton
from vlarl_fast.kernels import AGG_MODES, grpo_loss
from vlarl_fast.kernels.reference import grpo_loss_torch

STAT_KEYS = ("clipfrac", "clipfrac_lower", "ppo_kl")


def _inputs(seed, n_seq, seq_len, log_ratio_scale, mask_p, per_seq_adv, dtype, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logp = (torch.randn(n_seq, seq_len, generator=g) * 0.5 - 1.0)
    old = logp + torch.randn(n_seq, seq_len, generator=g) * log_ratio_scale
    if per_seq_adv:
        adv = torch.randn(n_seq, generator=g)
    else:
        adv = torch.randn(n_seq, seq_len, generator=g)
    mask = torch.rand(n_seq, seq_len, generator=g) < mask_p
    to = dict(device=device)
    return (logp.to(dtype).to(**to), old.to(dtype).to(**to), adv.to(dtype).to(**to), mask.to(**to))


def _loss_and_grad(logp, old, adv, mask, **kw):
    x = logp.detach().clone().requires_grad_()
    loss, stats = grpo_loss(x, old, adv, mask, **kw)
    loss.backward()
    return loss, stats, x.grad


@requires_triton
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_seq=st.integers(1, 9), seq_len=st.integers(1, 70),
       log_ratio_scale=st.sampled_from([0.02, 0.3, 2.0, 40.0]), mask_p=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       per_seq_adv=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       agg=st.sampled_from(AGG_MODES), clip_c=st.sampled_from([None, 3.0, 1.5]),
       clips=st.sampled_from([(0.2, 0.28), (0.2, 0.2), (0.0, 0.5)]))
def test_triton_matches_float64_reference(seed, n_seq, seq_len, log_ratio_scale, mask_p,
                                          per_seq_adv, dtype, agg, clip_c, clips):
    logp, old, adv, mask = _inputs(seed, n_seq, seq_len, log_ratio_scale, mask_p, per_seq_adv,
                                   dtype, KERNEL_DEVICE)
    kw = dict(clip_low=clips[0], clip_high=clips[1], clip_c=clip_c, agg=agg)
    loss, stats, grad = _loss_and_grad(logp, old, adv, mask, backend="triton", **kw)
    r_loss, r_stats, r_grad = _loss_and_grad(logp.double(), old.double(), adv.double(), mask,
                                             backend="torch", **kw)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_close_to_reference(loss, r_loss, 2e-5, "loss")
    # bf16 gradients are rounded once to bf16
    assert_close_to_reference(grad, r_grad, 2.0 ** -8 if dtype == torch.bfloat16 else 2e-5, "grad")
    for key in STAT_KEYS:
        assert_close_to_reference(stats[key], r_stats[key], 2e-5, key)
    assert (grad[~mask.to(grad.device)] == 0).all()


def _verl_oracle(old_log_prob, log_prob, advantages, response_mask, clip_low, clip_high,
                 clip_ratio_c, loss_agg_mode):
    """veRL 0.9.1 core_algos.compute_policy_loss conventions, token by token in float64:
    log-ratio clamped to +-20, dual clip only for A < 0, strict '>' for the clip counts, masked
    means over sum(mask) + 1e-8."""
    n_seq, seq_len = log_prob.shape
    loss_mat = torch.zeros(n_seq, seq_len, dtype=torch.float64)
    clip = lower = kl = 0.0
    m = response_mask.double()
    for b in range(n_seq):
        for t in range(seq_len):
            a = float(advantages[b, t])
            d = min(max(log_prob[b, t].item() - old_log_prob[b, t].item(), -20.0), 20.0)
            r = torch.exp(torch.tensor(d, dtype=torch.float64)).item()
            l1 = -a * r
            l2 = -a * min(max(r, 1 - clip_low), 1 + clip_high)
            c1 = max(l1, l2)
            l3 = -a * clip_ratio_c
            loss_mat[b, t] = min(l3, c1) if a < 0 else c1
            clip += float(m[b, t]) * (l2 > l1)
            lower += float(m[b, t]) * ((c1 > l3) and a < 0)
            kl += float(m[b, t]) * -d
    denom = m.sum().item() + 1e-8
    # veRL 0.9.1's agg_loss (every row here has a valid token, so "non-empty rows" = all rows):
    # token-mean divides by sum(mask) without eps, seq-mean-token-mean divides each row by its
    # count + 1e-8, and seq-mean-token-sum-norm is the seq-mean of row sums divided by L (older
    # veRL: the plain sum / L)
    if loss_agg_mode == "token-mean":
        loss = (loss_mat * m).sum() / m.sum()
    elif loss_agg_mode == "seq-mean-token-sum":
        loss = (loss_mat * m).sum(-1).mean()
    elif loss_agg_mode == "seq-mean-token-mean":
        loss = ((loss_mat * m).sum(-1) / (m.sum(-1) + 1e-8)).mean()
    else:
        loss = (loss_mat * m).sum(-1).mean() / seq_len
    return loss, clip / denom, kl / denom, lower / denom


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_verl_compute_policy_loss_drop_in_matches_verl_conventions(agg, backend, monkeypatch):
    from vlarl_fast.compat.verl import compute_policy_loss

    monkeypatch.setenv("VLARL_KERNEL_BACKEND", backend)
    g = torch.Generator().manual_seed(7)
    log_prob = torch.randn(4, 9, generator=g) * 0.5 - 1
    old = log_prob + torch.randn(4, 9, generator=g) * 0.4
    old[0, 0] = log_prob[0, 0] - 30.0  # beyond the +-20 clamp
    old[0, 1] = log_prob[0, 1] + 30.0
    adv = torch.randn(4, 9, generator=g)
    mask = (torch.rand(4, 9, generator=g) < 0.8).float()
    mask[:, 0] = 1.0  # every sequence has a valid token (veRL divides by 0 otherwise)
    x = log_prob.clone().to(KERNEL_DEVICE).requires_grad_()
    out = compute_policy_loss(old.to(KERNEL_DEVICE), x, adv.to(KERNEL_DEVICE), mask.to(KERNEL_DEVICE),
                              cliprange=0.2, cliprange_low=0.2, cliprange_high=0.28,
                              clip_ratio_c=3.0, loss_agg_mode=agg)
    expected = _verl_oracle(old.double(), log_prob.double(), adv.double(), mask, 0.2, 0.28, 3.0, agg)
    for got, want, name in zip(out, expected, ("pg_loss", "pg_clipfrac", "ppo_kl", "pg_clipfrac_lower")):
        assert abs(got.item() - float(want)) <= 1e-5 * (1 + abs(float(want))), name
    out[0].backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 0] == 0 and x.grad[0, 1] == 0, "clamped log-ratios pass no gradient"


def test_gradcheck_reference():
    g = torch.Generator().manual_seed(8)
    logp = (torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    old = logp.detach() + torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(3, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 6, generator=g) < 0.7
    for agg in AGG_MODES:
        for clip_c in (None, 3.0):
            assert torch.autograd.gradcheck(
                lambda x: grpo_loss_torch(x, old, adv, mask, clip_low=0.2, clip_high=0.28,
                                          clip_c=clip_c, agg=agg)[0], (logp,))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
@pytest.mark.parametrize("agg", AGG_MODES)
def test_empty_and_all_masked_give_zero_loss_and_finite_grads(backend, agg):
    kw = dict(clip_low=0.2, clip_high=0.28, clip_c=3.0, agg=agg, backend=backend)
    logp = torch.full((3, 5), -1.0, device=KERNEL_DEVICE)
    logp[1, 2] = float("nan")  # garbage at masked positions must not leak
    old = torch.full((3, 5), float("-inf"), device=KERNEL_DEVICE)
    adv = torch.full((3, 5), float("inf"), device=KERNEL_DEVICE)
    none = torch.zeros(3, 5, dtype=torch.bool, device=KERNEL_DEVICE)
    loss, stats, grad = _loss_and_grad(logp, old, adv, none, **kw)
    assert loss.item() == 0.0 and (grad == 0).all()
    assert all(stats[k].item() == 0.0 for k in STAT_KEYS)
    # one sequence fully masked, the others valid: the masked one contributes exactly 0
    some = none.clone()
    some[0] = True
    some[2, :2] = True
    logp2 = torch.randn(3, 5, device=KERNEL_DEVICE) - 1
    logp2[1] = float("nan")
    old2 = logp2.detach() + 0.1
    adv2 = torch.randn(3, 5, device=KERNEL_DEVICE)
    loss, stats, grad = _loss_and_grad(logp2, old2, adv2, some, **kw)
    assert torch.isfinite(loss) and torch.isfinite(grad).all() and (grad[1] == 0).all()
    # sizes zero
    for shape in ((0, 5), (3, 0)):
        z = torch.zeros(shape, device=KERNEL_DEVICE)
        loss, stats, grad = _loss_and_grad(z, z, z, z.bool(), **kw)
        assert loss.item() == 0.0 and grad.shape == shape


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_one_dim_input_is_one_sequence_and_per_sequence_advantage_broadcasts(backend):
    g = torch.Generator().manual_seed(9)
    logp = torch.randn(2, 6, generator=g).to(KERNEL_DEVICE)
    old = (logp.cpu() + torch.randn(2, 6, generator=g) * 0.3).to(KERNEL_DEVICE)
    adv = torch.randn(2, generator=g).to(KERNEL_DEVICE)
    mask = torch.ones(2, 6, dtype=torch.bool, device=KERNEL_DEVICE)
    kw = dict(clip_low=0.2, clip_high=0.28, agg="token-mean", backend=backend)
    per_seq, _ = grpo_loss(logp, old, adv, mask, **kw)
    full, _ = grpo_loss(logp, old, adv[:, None].expand(2, 6), mask, **kw)
    assert torch.allclose(per_seq, full, rtol=1e-6, atol=1e-7)
    one, _ = grpo_loss(logp[0], old[0], adv[0].expand(6), mask[0], **kw)
    first, _ = grpo_loss(logp[:1], old[:1], adv[:1], mask[:1], **kw)
    assert torch.allclose(one, first, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(old_logp=torch.zeros(2, 4)), ValueError, "old_logp"),
    (dict(mask=torch.ones(3, 3)), ValueError, "mask"),
    (dict(advantages=torch.zeros(3)), ValueError, "advantages"),
    (dict(logp=torch.zeros(2, 3, dtype=torch.long)), TypeError, "logp"),
    (dict(agg="token-sum"), ValueError, "agg"),
    (dict(clip_low=1.2), ValueError, "clip_low"),
    (dict(clip_high=-0.1), ValueError, "clip_high"),
    (dict(clip_c=0.9), ValueError, "clip_c"),
    (dict(backend="cuda"), ValueError, "backend"),
])
def test_argument_errors_name_the_argument(kwargs, error, words):
    args = dict(logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), advantages=torch.zeros(2, 3),
                mask=torch.ones(2, 3), clip_low=0.2, clip_high=0.28, clip_c=None, agg="token-mean")
    args.update(kwargs)
    with pytest.raises(error, match=words):
        grpo_loss(args.pop("logp"), args.pop("old_logp"), args.pop("advantages"), args.pop("mask"),
                  **args)
