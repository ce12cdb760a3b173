"""action_logprob / action_logprob_from_logits: Triton kernels (interpreted on CPU) against the
float64 PyTorch reference, forward and backward, plus edge cases and argument errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels.conftest import (run_fwd_bwd, FWD_TOL, GRAD_REL, KERNEL_DEVICE, assert_close_to_reference,
                                    requires_triton)
from vlarl_fast.kernels import action_logprob, action_logprob_from_logits
from vlarl_fast.kernels.reference import action_logprob_from_logits_torch, action_logprob_torch

DTYPES = [torch.float32, torch.bfloat16]


def _problem(seed, n_tokens, hidden_size, n_bins, bin_start, extra_rows, dtype, device="cpu",
             hidden_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    vocab = bin_start + n_bins + extra_rows
    hidden = (torch.randn(n_tokens, hidden_size, generator=g) * hidden_scale).to(dtype)
    weight = (torch.randn(vocab, hidden_size, generator=g) * 2.0 / hidden_size ** 0.5).to(dtype)
    labels = torch.randint(0, n_bins, (n_tokens,), generator=g)
    upstream = torch.randn(2, n_tokens, generator=g)
    return hidden.to(device), weight.to(device), labels.to(device), upstream.to(device)


def _reference(hidden, weight, labels, upstream, **kw):
    return run_fwd_bwd(action_logprob_torch, hidden.double(), weight.double(), labels, upstream.double(), **kw)


@requires_triton
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_tokens=st.integers(1, 40), hidden_size=st.integers(1, 70),
       n_bins=st.integers(1, 40), bin_start=st.integers(0, 6), extra_rows=st.integers(0, 5),
       temperature=st.floats(0.25, 3.0), dtype=st.sampled_from(DTYPES))
def test_triton_matches_float64_reference(seed, n_tokens, hidden_size, n_bins, bin_start,
                                          extra_rows, temperature, dtype):
    hidden, weight, labels, up = _problem(seed, n_tokens, hidden_size, n_bins, bin_start,
                                          extra_rows, dtype, KERNEL_DEVICE)
    kw = dict(temperature=temperature, bin_start=bin_start, bin_end=bin_start + n_bins)
    logp, ent, gh, gw = run_fwd_bwd(action_logprob, hidden, weight, labels, up, backend="triton", **kw)
    r_logp, r_ent, r_gh, r_gw = _reference(hidden, weight, labels, up, **kw)
    assert logp.dtype == torch.float32 and ent.dtype == torch.float32
    assert gh.dtype == dtype and gw.dtype == dtype and gw.shape == weight.shape
    assert_close_to_reference(logp, r_logp, FWD_TOL[dtype], "logp")
    assert_close_to_reference(ent, r_ent, FWD_TOL[dtype], "entropy")
    assert_close_to_reference(gh, r_gh, GRAD_REL[dtype], "grad hidden")
    assert_close_to_reference(gw, r_gw, GRAD_REL[dtype], "grad weight")
    outside = torch.cat([gw[:bin_start], gw[bin_start + n_bins:]])
    assert (outside == 0).all(), "weight rows outside the bins must get zero gradient"


@requires_triton
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_tokens=st.integers(1, 40), n_bins=st.integers(1, 40),
       bin_start=st.integers(0, 6), extra=st.integers(0, 5), temperature=st.floats(0.25, 3.0),
       dtype=st.sampled_from(DTYPES), logit_scale=st.sampled_from([1.0, 30.0]))
def test_triton_from_logits_matches_float64_reference(seed, n_tokens, n_bins, bin_start, extra,
                                                      temperature, dtype, logit_scale):
    g = torch.Generator().manual_seed(seed)
    vocab = bin_start + n_bins + extra
    logits = (torch.randn(n_tokens, vocab, generator=g) * logit_scale).to(dtype).to(KERNEL_DEVICE)
    labels = torch.randint(0, n_bins, (n_tokens,), generator=g).to(KERNEL_DEVICE)
    up = torch.randn(2, n_tokens, generator=g).to(KERNEL_DEVICE)
    kw = dict(temperature=temperature, bin_start=bin_start, bin_end=bin_start + n_bins)

    def run(fn, x, upstream, **extra_kw):
        x = x.detach().clone().requires_grad_()
        lp, en = fn(x, labels, return_entropy=True, **kw, **extra_kw)
        (upstream[0].to(lp.dtype) * lp + upstream[1].to(lp.dtype) * en).sum().backward()
        return lp, en, x.grad

    lp, en, gx = run(action_logprob_from_logits, logits, up, backend="triton")
    r_lp, r_en, r_gx = run(action_logprob_from_logits_torch, logits.double(), up.double())
    assert gx.dtype == dtype
    assert_close_to_reference(lp, r_lp, FWD_TOL[dtype], "logp")
    assert_close_to_reference(en, r_en, FWD_TOL[dtype], "entropy")
    assert_close_to_reference(gx, r_gx, GRAD_REL[dtype], "grad logits")
    outside = torch.cat([gx[:, :bin_start], gx[:, bin_start + n_bins:]], dim=1)
    assert (outside == 0).all()


@requires_triton
@pytest.mark.parametrize("return_entropy", [False, True])
def test_openvla_oft_bin_layout(return_entropy):
    """Llama-2 vocabulary of 32064 with the 256 action bins at -320:-64 (SimpleVLA-RL's slice),
    one trajectory chunk of 8 x 7 = 56 tokens, leading batch dims [2, 28]."""
    vocab, hidden_size = 32064, 32
    bin_start, bin_end = vocab - 320, vocab - 64
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 28, hidden_size, generator=g).to(torch.bfloat16).to(KERNEL_DEVICE)
    weight = (torch.randn(vocab, hidden_size, generator=g) * 0.3).to(torch.bfloat16).to(KERNEL_DEVICE)
    labels = torch.randint(0, 256, (2, 28), generator=g).to(KERNEL_DEVICE)
    hidden.requires_grad_()
    weight.requires_grad_()
    out = action_logprob(hidden, weight, labels, temperature=1.6, bin_start=bin_start,
                         bin_end=bin_end, return_entropy=return_entropy, backend="triton")
    logp = out[0] if return_entropy else out
    assert logp.shape == (2, 28) and logp.dtype == torch.float32
    # SimpleVLA-RL's path: full logits, slice, temperature, log-softmax, gather
    full = hidden.double() @ weight.double().T
    ref = torch.log_softmax(full[..., -320:-64] / 1.6, dim=-1).gather(-1, labels[..., None])[..., 0]
    assert_close_to_reference(logp, ref, 2e-5, "logp vs SimpleVLA-RL path")
    logp.sum().backward()
    assert (weight.grad[:bin_start] == 0).all() and (weight.grad[bin_end:] == 0).all()
    assert weight.grad[bin_start:bin_end].abs().sum() > 0


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_extreme_logits_and_tiny_temperature_stay_finite(backend):
    """Logits of +-1e4 at temperature 1e-6 (scaled logits +-1e10): finite values and grads."""
    g = torch.Generator().manual_seed(1)
    n_tokens, n_bins = 16, 24
    logits = torch.randn(n_tokens, n_bins + 8, generator=g).sign() * 1e4
    logits[:, 3] = 1e4  # ties at the maximum
    labels = torch.randint(0, n_bins, (n_tokens,), generator=g)
    for temperature in (1e-6, 1.6, 1e4):
        x = logits.clone().to(KERNEL_DEVICE).requires_grad_()
        lp, en = action_logprob_from_logits(x, labels.to(KERNEL_DEVICE), temperature=temperature,
                                            bin_start=4, bin_end=4 + n_bins, return_entropy=True,
                                            backend=backend)
        (lp.sum() + en.sum()).backward()
        assert torch.isfinite(lp).all() and torch.isfinite(en).all() and torch.isfinite(x.grad).all()
        assert (lp <= 0).all() and (en >= -1e-6).all()
        ref = action_logprob_from_logits_torch(logits.double(), labels, temperature=temperature,
                                               bin_start=4, bin_end=4 + n_bins)
        assert torch.allclose(lp.double().cpu(), ref, rtol=1e-6, atol=1e-4)
    # hidden-state path with huge hidden values
    hidden = (torch.randn(n_tokens, 8, generator=g) * 1e4).to(KERNEL_DEVICE).requires_grad_()
    weight = torch.randn(40, 8, generator=g).to(KERNEL_DEVICE).requires_grad_()
    lp, en = action_logprob(hidden, weight, labels.to(KERNEL_DEVICE), temperature=1e-6, bin_start=0,
                            bin_end=n_bins, return_entropy=True, backend=backend)
    (lp.sum() + en.sum()).backward()
    for t in (lp, en, hidden.grad, weight.grad):
        assert torch.isfinite(t).all()


def test_gradcheck_reference():
    g = torch.Generator().manual_seed(2)

    def leaves(n_tokens, hidden_size):
        hidden = torch.randn(n_tokens, hidden_size, generator=g, dtype=torch.float64)
        weight = torch.randn(12, hidden_size, generator=g, dtype=torch.float64)
        return hidden.requires_grad_(), weight.requires_grad_()

    labels = torch.randint(0, 6, (5,), generator=g)

    def logp_and_entropy(h, w):
        return action_logprob_torch(h, w, labels[: h.shape[0]], temperature=1.6, bin_start=3,
                                    bin_end=9, return_entropy=True)

    assert torch.autograd.gradcheck(logp_and_entropy, leaves(5, 7))
    assert torch.autograd.gradgradcheck(logp_and_entropy, leaves(2, 3))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_leading_dims_no_grad_and_empty(backend):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 4, 16, generator=g).to(KERNEL_DEVICE)
    weight = torch.randn(50, 16, generator=g).to(KERNEL_DEVICE)
    labels = torch.randint(0, 20, (3, 4), generator=g).to(KERNEL_DEVICE)
    kw = dict(temperature=1.6, bin_start=10, bin_end=30, backend=backend)
    with torch.no_grad():
        logp = action_logprob(hidden, weight, labels, **kw)
    flat = action_logprob(hidden.reshape(12, 16), weight, labels.reshape(12), **kw)
    assert logp.shape == (3, 4)
    assert torch.equal(logp.reshape(12), flat)
    empty = action_logprob(hidden[:0], weight, labels[:0], return_entropy=True, **kw)
    assert empty[0].shape == (0, 4) and empty[1].shape == (0, 4)


def test_torch_path_float64_is_reference_precision():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(6, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(9, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (6,), generator=g)
    logp = action_logprob(hidden, weight, labels, temperature=0.7, bin_start=2, bin_end=6)
    assert logp.dtype == torch.float64
    expected = torch.log_softmax(hidden @ weight[2:6].T / 0.7, -1).gather(1, labels[:, None])[:, 0]
    assert torch.allclose(logp, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case, error, words", [
    ("temperature0", ValueError, "temperature"),
    ("temperature_nan", ValueError, "temperature"),
    ("bins_reversed", ValueError, "bin_start"),
    ("bins_past_vocab", ValueError, "bin_end"),
    ("label_range", ValueError, "labels"),
    ("label_shape", ValueError, "labels"),
    ("label_dtype", TypeError, "labels"),
    ("hidden_size", ValueError, "hidden"),
    ("int_hidden", TypeError, "hidden"),
])
def test_argument_errors_name_the_argument(case, error, words):
    hidden, weight = torch.randn(4, 8), torch.randn(20, 8)
    labels = torch.zeros(4, dtype=torch.long)
    kw = dict(temperature=1.0, bin_start=4, bin_end=12)
    if case == "temperature0":
        kw["temperature"] = 0.0
    elif case == "temperature_nan":
        kw["temperature"] = float("nan")
    elif case == "bins_reversed":
        kw.update(bin_start=12, bin_end=4)
    elif case == "bins_past_vocab":
        kw.update(bin_end=21)
    elif case == "label_range":
        labels = torch.tensor([0, 1, 8, 2])
    elif case == "label_shape":
        labels = torch.zeros(5, dtype=torch.long)
    elif case == "label_dtype":
        labels = torch.zeros(4)
    elif case == "hidden_size":
        hidden = torch.randn(4, 9)
    elif case == "int_hidden":
        hidden = torch.zeros(4, 8, dtype=torch.long)
    with pytest.raises(error, match=words):
        action_logprob(hidden, weight, labels, **kw)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_mixed_input_dtypes_compute_in_fp32(backend):
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(9, 20, generator=g).to(torch.bfloat16).to(KERNEL_DEVICE).requires_grad_()
    weight = torch.randn(40, 20, generator=g).to(KERNEL_DEVICE).requires_grad_()
    labels = torch.randint(0, 16, (9,), generator=g).to(KERNEL_DEVICE)
    logp = action_logprob(hidden, weight, labels, temperature=1.6, bin_start=20, bin_end=36,
                          backend=backend)
    logp.sum().backward()
    ref = action_logprob_torch(hidden.double(), weight.double(), labels, temperature=1.6,
                               bin_start=20, bin_end=36)
    assert_close_to_reference(logp, ref, 2e-5, "logp")
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_tokens=st.integers(1, 30), hidden_size=st.integers(1, 30),
       n_bins=st.integers(1, 20), token_chunk=st.integers(1, 9), hidden_slice=st.integers(1, 9),
       temperature=st.floats(0.25, 3.0), dtype=st.sampled_from(DTYPES + [torch.float64]),
       grads=st.sampled_from(["both", "logp", "entropy"]))
def test_chunked_torch_path_matches_float64_reference(seed, n_tokens, hidden_size, n_bins,
                                                      token_chunk, hidden_slice, temperature,
                                                      dtype, grads):
    """The CPU path walks tokens and hidden slices in chunks; small chunks cross every boundary."""
    from vlarl_fast.kernels import action_logprob_chunked as chunked

    old = chunked.TOKEN_CHUNK, chunked.HIDDEN_SLICE
    chunked.TOKEN_CHUNK, chunked.HIDDEN_SLICE = token_chunk, hidden_slice
    try:
        hidden, weight, labels, up = _problem(seed, n_tokens, hidden_size, n_bins, 2, 3, dtype)
        if grads == "logp":
            up[1] = 0
        elif grads == "entropy":
            up[0] = 0
        kw = dict(temperature=temperature, bin_start=2, bin_end=2 + n_bins)
        logp, ent, gh, gw = run_fwd_bwd(action_logprob, hidden, weight, labels, up, backend="torch", **kw)
        r_logp, r_ent, r_gh, r_gw = _reference(hidden, weight, labels, up, **kw)
    finally:
        chunked.TOKEN_CHUNK, chunked.HIDDEN_SLICE = old
    rel = 1e-12 if dtype == torch.float64 else FWD_TOL[dtype]
    grel = 1e-12 if dtype == torch.float64 else GRAD_REL[dtype]
    assert logp.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close_to_reference(logp, r_logp, rel, "logp")
    assert_close_to_reference(ent, r_ent, rel, "entropy")
    assert_close_to_reference(gh, r_gh, grel, "grad hidden")
    assert_close_to_reference(gw, r_gw, grel, "grad weight")


@pytest.mark.parametrize("return_entropy", [False, True])
def test_from_logits_keeps_leading_dims(return_entropy):
    """[B, T, V] logits -> [B, T] log-probs (and entropies), with or without the entropy."""
    from vlarl_fast.kernels import action_logprob_from_logits

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 40, generator=g)
    labels = torch.randint(0, 8, (2, 3), generator=g)
    out = action_logprob_from_logits(logits, labels, temperature=1.6, bin_start=30, bin_end=38,
                                     return_entropy=return_entropy)
    logp = out[0] if return_entropy else out
    flat = action_logprob_from_logits(logits.reshape(6, 40), labels.reshape(6), temperature=1.6, bin_start=30,
                                      bin_end=38)
    assert logp.shape == (2, 3) and torch.equal(logp.reshape(6), flat)
    if return_entropy:
        assert out[1].shape == (2, 3)
