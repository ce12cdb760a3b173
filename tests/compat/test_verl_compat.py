"""vlarl_fast.compat.verl against veRL 0.9.1 itself (installed from PyPI by scripts/setup.sh,
`pip install --no-deps verl`): every public function, every aggregation mode, empty rows, fully
masked batches, masked inf/NaN, extreme log-ratios, the dual clip, dp_size / global counts.

The import is veRL's own package (`verl.trainer.ppo.core_algos`, `verl.utils.torch_functional`).
One stub: when Ray is not installed, a module `ray` with an empty `ObjectRef` class stands in for
it. veRL imports Ray only for its DataProto (`verl/protocol.py`: `import ray` and one annotation
`list[ray.ObjectRef]`), nothing on the paths tested here, and Ray is an ~80 MB distributed
runtime. veRL's `import verl` also calls logging.basicConfig; the root logger is restored after.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from tests.kernels.conftest import requires_triton
from vlarl_fast.compat import verl as compat

MODES = compat.AGG_MODES
SEQ_MODES = ("seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean")


@pytest.fixture(scope="module")
def V():
    """veRL 0.9.1's modules: V.core_algos, V.F (torch_functional), V.ActorConfig."""
    if importlib.util.find_spec("verl") is None:
        if os.environ.get("CI"):
            raise RuntimeError("veRL is not installed: scripts/setup.sh installs verl==0.9.1")
        pytest.skip("veRL not installed (bash scripts/setup.sh installs it)")
    if importlib.util.find_spec("ray") is None and "ray" not in sys.modules:
        ray = types.ModuleType("ray")
        ray.ObjectRef = type("ObjectRef", (), {})
        sys.modules["ray"] = ray
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import verl
        from verl.trainer.ppo import core_algos
        from verl.utils import torch_functional
        from verl.workers.config import ActorConfig
    finally:
        root.handlers[:], root.level = handlers, level
    assert verl.__version__ == "0.9.1", verl.__version__
    assert not torch_functional.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE  # its torch path here
    return types.SimpleNamespace(core_algos=core_algos, F=torch_functional, ActorConfig=ActorConfig)


def _same(actual, expected, rtol=0.0, atol=0.0):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                               check_dtype=False)


def _loss_inputs(seed, n_seq=5, seq_len=9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    loss_mat = torch.randn(n_seq, seq_len, generator=g, dtype=dtype)
    mask = torch.rand(n_seq, seq_len, generator=g) < 0.6
    mask[:, 0] = True
    mask[2] = False  # an empty sequence
    return loss_mat, mask


# ---- signatures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", compat.__all__)
def test_public_functions_have_verls_signature(V, name):
    if name == "AGG_MODES":
        return
    theirs = getattr(V.F, name, None) or getattr(V.core_algos, name)
    ours = inspect.signature(getattr(compat, name)).parameters
    want = inspect.signature(theirs).parameters
    assert list(ours) == list(want)
    assert [p.default for p in ours.values()] == [p.default for p in want.values()]


# ---- masked_sum / masked_mean -------------------------------------------------------------------

@pytest.mark.parametrize("float_mask", [False, True])
def test_masked_sum_and_mean_equal_verl_with_masked_garbage(V, float_mask):
    values, mask = _loss_inputs(1)
    values[mask.logical_not() & (torch.rand(values.shape) < 0.5)] = float("nan")
    values[0, ~mask[0]] = float("inf")
    m = mask.double() * 0.5 if float_mask else mask
    for axis in (None, -1, 0, (0, 1)):
        # the same ops (where, mul, sum, + 1e-8): bit-identical
        _same(compat.masked_sum(values, m, axis), V.F.masked_sum(values, m, axis))
        _same(compat.masked_mean(values, m, axis), V.F.masked_mean(values, m, axis))
    assert torch.isfinite(compat.masked_mean(values, m, -1)).all()


# ---- agg_loss ------------------------------------------------------------------------------------

AGG_KWARGS = [
    {},
    dict(dp_size=2, batch_num_tokens=37, global_batch_size=6),
    dict(loss_scale_factor=4),
    dict(batch_num_tokens=torch.tensor(11), global_batch_size=torch.tensor(3.0)),
]


def _agg_and_grad(fn, loss_mat, mask, mode, **kw):
    x = loss_mat.detach().clone().requires_grad_()
    loss = fn(x, mask, mode, **kw)
    loss.backward()
    return loss, x.grad


@pytest.mark.parametrize("mode", MODES)
def test_agg_loss_equals_verl(V, mode):
    for seed, kw in enumerate(AGG_KWARGS):
        loss_mat, mask = _loss_inputs(seed)
        for m in (mask, mask.float() * 0.75):
            got = _agg_and_grad(compat.agg_loss, loss_mat, m, mode, **kw)
            want = _agg_and_grad(V.core_algos.agg_loss, loss_mat, m, mode, **kw)
            # the same ops in the same order (masked_sum of a row == sum(x * m) for finite x):
            # bit-identical values and gradients
            _same(got[0], want[0])
            _same(got[1], want[1])
    if mode != "token-sum":  # with dp_size > 1 the global count must be given, in both
        for fn in (compat.agg_loss, V.core_algos.agg_loss):
            with pytest.raises(ValueError, match="required when dp_size > 1"):
                fn(loss_mat, mask, mode, dp_size=2)


def test_agg_loss_rejects_unknown_modes_like_verl(V):
    loss_mat, mask = _loss_inputs(0)
    for mode in ("token-mean-unbiased", "mean"):
        with pytest.raises(ValueError, match="Invalid loss_agg_mode"):
            V.core_algos.agg_loss(loss_mat, mask, mode)
        with pytest.raises(ValueError, match="Invalid loss_agg_mode"):
            compat.agg_loss(loss_mat, mask, mode)


@pytest.mark.parametrize("mode", MODES)
def test_agg_loss_fully_masked_batch(V, mode):
    """veRL divides 0 by 0 (NaN) when it counts the tokens / sequences itself; ours is 0 with a
    zero gradient. Given the global counts, both are 0."""
    loss_mat, mask = _loss_inputs(3)
    mask = torch.zeros_like(mask)
    got, got_grad = _agg_and_grad(compat.agg_loss, loss_mat, mask, mode)
    want, _ = _agg_and_grad(V.core_algos.agg_loss, loss_mat, mask, mode)
    assert got == 0 and (got_grad == 0).all()
    assert torch.isnan(want) if mode != "token-sum" else want == 0
    kw = dict(batch_num_tokens=4, global_batch_size=2)
    _same(compat.agg_loss(loss_mat, mask, mode, **kw), V.core_algos.agg_loss(loss_mat, mask, mode, **kw))


@pytest.mark.parametrize("mode", MODES)
def test_agg_loss_masked_inf_nan(V, mode):
    """Garbage at masked positions: ours equals veRL on the cleaned matrix in every mode; veRL on
    the garbage agrees in the token modes (masked_sum) and is NaN in the seq-mean-* modes (the
    per-sequence `sum(loss_mat * loss_mask)`), the documented difference."""
    loss_mat, mask = _loss_inputs(4)
    dirty = loss_mat.clone()
    dirty[0, ~mask[0]] = float("inf")
    dirty[2, :] = float("nan")  # the empty row
    dirty[3, ~mask[3]] = float("-inf")
    clean = loss_mat.masked_fill(~mask, 0.0)
    got, got_grad = _agg_and_grad(compat.agg_loss, dirty, mask, mode)
    want, want_grad = _agg_and_grad(V.core_algos.agg_loss, clean, mask, mode)
    _same(got, want)
    _same(got_grad, want_grad)
    verl_dirty = V.core_algos.agg_loss(dirty, mask, mode)
    if mode in SEQ_MODES:
        assert torch.isnan(verl_dirty)
    else:
        _same(verl_dirty, want)


# ---- compute_policy_loss / compute_policy_loss_vanilla -------------------------------------------

def _policy_inputs(seed, dtype, n_seq=5, seq_len=12):
    """Ratios inside and outside the clip range, 5 tokens past the +-20 clamp, negative advantages
    with ratios above clip_ratio_c (dual clip active), one empty sequence."""
    g = torch.Generator().manual_seed(seed)
    log_prob = torch.randn(n_seq, seq_len, generator=g, dtype=torch.float64) * 0.5 - 1.0
    old = log_prob + torch.randn(n_seq, seq_len, generator=g, dtype=torch.float64) * 0.6
    old[0, :3] = log_prob[0, :3] + torch.tensor([25.0, -30.0, 50.0], dtype=torch.float64)
    old[1, :2] = log_prob[1, :2] - torch.tensor([3.0, 40.0], dtype=torch.float64)  # ratio e^3, e^40
    adv = torch.randn(n_seq, seq_len, generator=g, dtype=torch.float64)
    adv[1, :2] = -1.0
    mask = torch.rand(n_seq, seq_len, generator=g) < 0.75
    mask[:2, :3] = True
    mask[3] = False
    return log_prob.to(dtype), old.to(dtype), adv.to(dtype), mask


def _policy_and_grad(fn, log_prob, old, adv, mask, **kw):
    x = log_prob.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # veRL: compute_policy_loss is deprecated
        out = fn(old, x, adv, mask, **kw)
    out[0].backward()
    return out, x.grad


# fp32 through the fused kernel: the same per-token maths, summed in another order and with the
# aggregation weights folded into each term: relative 1e-6 of the loss scale; 1e-5 leaves margin.
# Gradients are w * (-A r) per token, one or two fp32 roundings from veRL's autograd.
FUSED_TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["fp64_exact", "fp32_fused_torch",
                                  pytest.param("fp32_fused_triton", marks=requires_triton)])
def test_compute_policy_loss_equals_verl(V, mode, path, monkeypatch):
    dtype = torch.float64 if path == "fp64_exact" else torch.float32
    monkeypatch.setenv("VLARL_KERNEL_BACKEND", "triton" if path.endswith("triton") else "torch")
    inputs = _policy_inputs(7, dtype)
    kw = dict(cliprange=0.2, cliprange_low=0.2, cliprange_high=0.28, clip_ratio_c=3.0,
              loss_agg_mode=mode)
    got, got_grad = _policy_and_grad(compat.compute_policy_loss, *inputs, **kw)
    want, want_grad = _policy_and_grad(V.core_algos.compute_policy_loss, *inputs, **kw)
    assert len(got) == len(want) == 4
    tol = dict(rtol=0.0, atol=0.0) if dtype == torch.float64 else FUSED_TOL
    for a, b in zip(got, want):
        _same(a, b.detach(), **tol)
    _same(got_grad, want_grad, **tol)
    assert (got_grad[0, :3] == 0).all() and (got_grad[3] == 0).all()  # clamped / empty: no gradient
    assert got[3] > 0  # the dual clip was active


@pytest.mark.parametrize("mode", MODES)
def test_compute_policy_loss_masked_garbage_and_empty_batch(V, mode):
    """inf/NaN at masked positions: ours equals veRL on the cleaned inputs (finite loss, zero
    gradient there); veRL on the garbage gives NaN gradients (inf advantage x zero gradient), and
    a NaN loss in the seq-mean-* modes. A fully masked batch: ours 0, veRL NaN (0 / 0)."""
    log_prob, old, adv, mask = _policy_inputs(8, torch.float64)
    kw = dict(cliprange=0.2, clip_ratio_c=3.0, loss_agg_mode=mode)
    dirty = [t.clone() for t in (log_prob, old, adv)]
    dirty[0][3, 0] = float("nan")
    dirty[1][0, ~mask[0]] = float("inf")
    dirty[2][2, ~mask[2]] = float("-inf")
    clean = [t.masked_fill(~mask, 0.0) for t in (log_prob, old, adv)]
    got, got_grad = _policy_and_grad(compat.compute_policy_loss, *dirty, mask, **kw)
    want, want_grad = _policy_and_grad(V.core_algos.compute_policy_loss, *clean, mask, **kw)
    for a, b in zip(got, want):
        _same(a, b.detach())
    _same(got_grad, want_grad)
    verl_dirty, verl_dirty_grad = _policy_and_grad(V.core_algos.compute_policy_loss, *dirty, mask, **kw)
    assert torch.isnan(verl_dirty_grad).any()
    assert torch.isnan(verl_dirty[0]) if mode in SEQ_MODES else verl_dirty[0] == want[0]
    for a, b in zip(got[1:], verl_dirty[1:]):  # the statistics are masked means in both
        _same(a, b.detach())
    empty = torch.zeros_like(mask)
    got, got_grad = _policy_and_grad(compat.compute_policy_loss, log_prob.float(), old.float(),
                                     adv.float(), empty, **kw)
    want, _ = _policy_and_grad(V.core_algos.compute_policy_loss, log_prob, old, adv, empty, **kw)
    assert got[0] == 0 and (got_grad == 0).all() and all(s == 0 for s in got[1:])
    assert torch.isnan(want[0]) if mode != "token-sum" else want[0] == 0


def test_compute_policy_loss_argument_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="cliprange"):
        compat.compute_policy_loss(x, x, x, x)
    with pytest.raises(ValueError, match="clip_ratio_c"):
        compat.compute_policy_loss(x, x, x, x, cliprange=0.2, clip_ratio_c=1.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("weights", [False, True])
def test_compute_policy_loss_vanilla_equals_verl(V, mode, weights):
    """veRL 0.9.1's registered "vanilla" loss with its ActorConfig: clip ranges, clip_ratio_c,
    global_batch_info (dp_size, global counts, loss_scale_factor), rollout_is_weights."""
    log_prob, old, adv, mask = _policy_inputs(9, torch.float64)
    config = V.ActorConfig(strategy="fsdp", rollout_n=4, ppo_micro_batch_size_per_gpu=1,
                           clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=2.5)
    config.global_batch_info.update(dp_size=2, batch_num_tokens=70, global_batch_size=9,
                                    loss_scale_factor=16)
    w = torch.rand(mask.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 \
        if weights else None
    kw = dict(loss_agg_mode=mode, config=config, rollout_is_weights=w)
    (got, got_metrics), got_grad = _policy_and_grad(compat.compute_policy_loss_vanilla,
                                                    log_prob, old, adv, mask, **kw)
    (want, want_metrics), want_grad = _policy_and_grad(V.core_algos.compute_policy_loss_vanilla,
                                                       log_prob, old, adv, mask, **kw)
    _same(got, want)
    _same(got_grad, want_grad)
    assert got_metrics == want_metrics
    # the fused path (fp32), same config
    f32 = [t.float() for t in (log_prob, old, adv)]
    kw["rollout_is_weights"] = None
    (got32, _), got32_grad = _policy_and_grad(compat.compute_policy_loss_vanilla, *f32, mask, **kw)
    (want32, _), want32_grad = _policy_and_grad(V.core_algos.compute_policy_loss_vanilla, *f32,
                                                mask, **kw)
    _same(got32, want32, **FUSED_TOL)
    _same(got32_grad, want32_grad, **FUSED_TOL)


# ---- compute_grpo_outcome_advantage -------------------------------------------------------------

# continuous scores: group means and stds summed in another order than veRL's torch.mean /
# torch.std of a stacked group: a few ulp; fp32 1e-5, fp64 1e-12. Binary scores: sums are exact.
ADV_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("binary", [True, False])
def test_grpo_advantage_equals_verl(V, dtype, norm, binary):
    g = torch.Generator().manual_seed(11)
    n, seq_len = 30, 6
    group = torch.randint(0, 8, (n,), generator=g)
    group[:3] = torch.tensor([50, 51, 51])  # a group of one and a pair
    index = np.array([f"uid-{int(k)}" for k in group], dtype=object)
    rewards = (torch.randint(0, 2, (n, seq_len), generator=g).double() if binary
               else torch.randn(n, seq_len, generator=g, dtype=torch.float64)).to(dtype)
    mask = torch.arange(seq_len)[None] < torch.randint(0, seq_len + 1, (n,), generator=g)[:, None]
    for eps in (1e-6, 0.1):
        got = compat.compute_grpo_outcome_advantage(rewards, mask, index, epsilon=eps,
                                                    norm_adv_by_std_in_grpo=norm)
        want = V.core_algos.compute_grpo_outcome_advantage(rewards.clone(), mask, index,
                                                           epsilon=eps, norm_adv_by_std_in_grpo=norm)
        assert got[0] is got[1] and got[0].dtype == want[0].dtype
        _same(got[0], want[0], rtol=ADV_TOL[dtype], atol=ADV_TOL[dtype])
        _same(got[0][0], want[0][0])  # the group of one, bit for bit (float32(1 + eps) in fp64)


# ---- logprobs / entropy -------------------------------------------------------------------------

# fp32: the fused kernel's log-softmax (max-shifted) and -sum p log p against veRL's
# x - logsumexp(x) and logsumexp - sum p x: sums of <= 1500 terms of magnitude <= ~15 rounded in
# another order, a few 1e-6; 2e-5 leaves margin. fp64: 1e-12.
LOGIT_TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("n_bins", [256, 1500])  # fused kernel / veRL's row loop
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_logprobs_and_entropy_equal_verl(V, n_bins, dtype):
    g = torch.Generator().manual_seed(12)
    logits = (torch.randn(3, 7, n_bins, generator=g) * 4).to(dtype)
    labels = torch.randint(0, n_bins, (3, 7), generator=g)
    x = logits.detach().clone().requires_grad_()
    lp, ent = compat.logprobs_from_logits(x, labels), compat.entropy_from_logits(x)
    (lp.sum() + 0.3 * ent.sum()).backward()
    # half inputs: ours are fp32, the values veRL computes from logits.float() (its flash-attn
    # path; its pure-torch path rounds them to bf16, checked below)
    ref = (logits.float() if dtype == torch.bfloat16 else logits).detach().requires_grad_()
    want_lp, want_ent = V.F.logprobs_from_logits(ref, labels), V.F.entropy_from_logits(ref)
    (want_lp.sum() + 0.3 * want_ent.sum()).backward()
    tol = LOGIT_TOL.get(dtype, LOGIT_TOL[torch.float32])
    assert lp.dtype == want_lp.dtype and ent.dtype == want_ent.dtype
    _same(lp, want_lp, rtol=tol, atol=tol)
    _same(ent, want_ent, rtol=tol, atol=tol)
    grad_tol = 2.0 ** -8 if dtype == torch.bfloat16 else tol  # bf16 gradients: rounded once
    _same(x.grad.float(), ref.grad.float(), rtol=grad_tol, atol=grad_tol)
    if dtype == torch.bfloat16:  # veRL's own bf16 log-probs: ours rounded to bf16, within 1 ulp
        _same(lp.to(torch.bfloat16), V.F.logprobs_from_logits(logits, labels), rtol=2.0 ** -7, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_compute_entropy_loss_equals_verl(V, mode):
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(4, 6, 256, generator=g) * 3
    mask = torch.arange(6)[None] < torch.tensor([[6], [0], [2], [5]])  # an empty row
    _same(compat.compute_entropy_loss(logits, mask, mode),
          V.core_algos.compute_entropy_loss(logits, mask, mode), rtol=2e-5, atol=2e-5)
