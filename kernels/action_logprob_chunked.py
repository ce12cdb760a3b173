"""PyTorch CPU path of the action log-prob: an autograd Function that saves only two numbers
per token (max and log-sum-exp of the scaled bin logits), so neither the full-vocabulary logits
nor an fp32 copy of the hidden states ever exist; the backward recomputes the logits.

Same maths as action_logprob.py (see there): z = s h W_bins^T, m = max z, S = sum exp(z - m),
log p = (z - m) - log S, H = -sum p log p = log S - sum exp(z - m)(z - m) / S, and in the
backward G = s dL/dz = s (g (onehot - p) - e p (log p + H)), dL/dh = G W_bins,
dL/dW_bins = G^T h. The dense weight gradient is a lazily zeroed tensor
(cpu_native.lazy_zeros_like) with only the bin rows written.

Two implementations:
* bf16 hidden and weight on an AVX512-BF16 CPU (cpu_native.native_bf16_applies): the native
  kernels. Forward: one call, z in per-thread [16, bins] blocks, out come logp, entropy and
  (m, log S): O(T) memory. Backward: G [T, bins] fp32 from one call (z recomputed bit for bit),
  then dL/dh and dL/dW_bins by one fp32-FMA matmul each, written straight to bf16.
* everything else (fp32, fp64, fp16, mixed dtypes, bf16 without the native kernels, tracing
  under torch.compile): torch ops over chunks of TOKEN_CHUNK tokens in the compute dtype (fp64
  if any input is fp64, else fp32). z per chunk is one matmul for same-dtype inputs; otherwise
  hidden states and bin rows are converted HIDDEN_SLICE columns at a time into reused buffers
  (forward extra memory ~0.8 MB for bf16 at OpenVLA-OFT sizes). The backward forms G for all
  tokens, then dL/dh and dL/dW_bins by one matmul each in the compute dtype (inputs in another
  dtype: chunk by chunk through reused buffers), each rounded once to its input's dtype.
In both, G stays in the compute dtype: G W_bins and G^T h are sums whose terms can cancel
(every token's G sums to zero over the bins, so G W_bins cancels whatever all bin rows share),
and rounding G to bf16 first would carry 2^-8 errors into the cancellation.
"""

from __future__ import annotations

import torch

from . import cpu_native
from .cpu_native import lazy_zeros_like, native_bf16_applies

TOKEN_CHUNK = 128
HIDDEN_SLICE = 512


def _rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.numel() == 0 or t.stride(-1) == 1 else t.contiguous()


class _BinLogits:
    """z [rows, bins] = s * hidden[rows] W_bins^T in the compute dtype, into one buffer reused
    for every token chunk; the same operations at every call (forward and backward agree).
    Inputs in another dtype are converted HIDDEN_SLICE columns at a time into reused buffers
    (for bf16 at OpenVLA-OFT sizes an fp32 copy of the bin rows alone would be 4 MB)."""

    def __init__(self, hidden, w_bins, inv_temperature, dtype):
        self.inv_t = inv_temperature
        self.hidden, self.w = hidden, w_bins
        rows, cols = min(TOKEN_CHUNK, hidden.shape[0]), min(HIDDEN_SLICE, hidden.shape[1])
        self.h_buf = (None if hidden.dtype == dtype
                      else torch.empty(rows, cols, dtype=dtype, device=hidden.device))
        self.w_buf = (None if w_bins.dtype == dtype
                      else torch.empty(w_bins.shape[0], cols, dtype=dtype, device=hidden.device))
        self.z = torch.empty(rows, w_bins.shape[0], dtype=dtype, device=hidden.device)

    def __call__(self, t0: int, t1: int) -> torch.Tensor:
        z = self.z[: t1 - t0]
        h = self.hidden[t0:t1]
        if self.h_buf is None and self.w_buf is None:
            torch.mm(h, self.w.T, out=z)
        elif h.shape[1] == 0:
            z.zero_()
        else:
            for k0 in range(0, h.shape[1], HIDDEN_SLICE):
                k1 = min(k0 + HIDDEN_SLICE, h.shape[1])
                h_s, w_s = h[:, k0:k1], self.w[:, k0:k1]
                if self.h_buf is not None:
                    h_s = self.h_buf[: t1 - t0, : k1 - k0].copy_(h_s)
                if self.w_buf is not None:
                    w_s = self.w_buf[:, : k1 - k0].copy_(w_s)
                if k0 == 0:
                    torch.mm(h_s, w_s.T, out=z)
                else:
                    z.addmm_(h_s, w_s.T)
        return z.mul_(self.inv_t)


class ChunkedActionLogprobFunction(torch.autograd.Function):
    """(hidden [T, H], weight [V, H], labels [T]) -> (logp [T], entropy [T])."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, bin_start, bin_end, save_z=False):
        dtype = torch.float64 if torch.float64 in (hidden.dtype, weight.dtype) else torch.float32
        inv_t = 1.0 / temperature
        n_tokens = hidden.shape[0]
        labels = labels.long()
        w_bins = weight[bin_start:bin_end]
        ctx.args = (temperature, bin_start, bin_end, dtype)
        ctx.native = native_bf16_applies(hidden, w_bins)
        if ctx.native:
            hidden, labels = _rows_contiguous(hidden), labels.contiguous()
            # When a gradient will be needed, z (4 bytes per bin and token, ~1/125 of the
            # full-vocabulary logits) is kept: the backward then skips recomputing it.
            logp, entropy, m_all, log_s_all, z = cpu_native.bf16_forward(
                hidden, _rows_contiguous(w_bins), labels, inv_t, save_logits=save_z)
            ctx.save_for_backward(hidden, weight, labels, m_all, log_s_all, z)
            return logp, entropy
        logits = _BinLogits(hidden, w_bins, inv_t, dtype)
        exp_buf = torch.empty_like(logits.z)
        logp = torch.empty(n_tokens, dtype=dtype, device=hidden.device)
        entropy = torch.empty_like(logp)
        m_all = torch.empty_like(logp)
        log_s_all = torch.empty_like(logp)
        for t0 in range(0, n_tokens, TOKEN_CHUNK):
            t1 = min(n_tokens, t0 + TOKEN_CHUNK)
            shifted = logits(t0, t1)
            m = torch.amax(shifted, 1, out=m_all[t0:t1])
            shifted.sub_(m[:, None])
            e = torch.exp(shifted, out=exp_buf[: t1 - t0])
            s = e.sum(1)
            log_s = torch.log(s, out=log_s_all[t0:t1])
            torch.sub(shifted.gather(1, labels[t0:t1, None])[:, 0], log_s, out=logp[t0:t1])
            # H = -sum p log p = log S - sum e (z - m) / S: two non-negative terms
            torch.sub(log_s, e.mul_(shifted).sum(1).div_(s), out=entropy[t0:t1])
        ctx.save_for_backward(hidden, weight, labels, m_all, log_s_all, None)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, labels, m_all, log_s_all, z = ctx.saved_tensors
        temperature, bin_start, bin_end, dtype = ctx.args
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_h or need_w):
            return None, None, None, None, None, None, None
        w_bins = weight[bin_start:bin_end]
        inv_t = 1.0 / temperature
        (n_tokens, hidden_size), n_bins = hidden.shape, w_bins.shape[0]
        chunk = min(TOKEN_CHUNK, n_tokens)
        if ctx.native:
            return _native_bf16_backward(hidden, weight, labels, m_all, log_s_all, g_logp, g_ent,
                                         inv_t, bin_start, bin_end, need_h, need_w, z)
        logits = _BinLogits(hidden, w_bins, inv_t, dtype)
        grad_z = torch.empty(n_tokens, n_bins, dtype=dtype, device=hidden.device)  # G, all tokens
        for t0 in range(0, n_tokens, TOKEN_CHUNK):
            t1 = min(n_tokens, t0 + TOKEN_CHUNK)
            _grad_logits(logits, t0, t1, labels, m_all, log_s_all, g_logp, g_ent, grad_z[t0:t1])
        # inputs in the compute dtype: one matmul per gradient (results independent of
        # TOKEN_CHUNK); otherwise the conversions go chunk by chunk through reused buffers
        grad_h = grad_weight = None
        if need_h:
            w_c = w_bins.to(dtype)  # no copy when already in the compute dtype
            if hidden.dtype == dtype:
                grad_h = grad_z @ w_c
            else:  # each row rounded once to hidden's dtype
                grad_h = torch.empty(n_tokens, hidden_size, dtype=hidden.dtype, device=hidden.device)
                gh_buf = torch.empty(chunk, hidden_size, dtype=dtype, device=hidden.device)
                for t0 in range(0, n_tokens, TOKEN_CHUNK):
                    t1 = min(n_tokens, t0 + TOKEN_CHUNK)
                    grad_h[t0:t1] = torch.mm(grad_z[t0:t1], w_c, out=gh_buf[: t1 - t0])
        if need_w:
            grad_weight = lazy_zeros_like(weight)
            rows = grad_weight[bin_start:bin_end]
            if hidden.dtype == dtype:
                if weight.dtype == dtype:
                    torch.mm(grad_z.T, hidden, out=rows)
                else:
                    rows.copy_(grad_z.T @ hidden)
            else:  # accumulated in the compute dtype over converted chunks, rounded once
                acc = torch.zeros(n_bins, hidden_size, dtype=dtype, device=hidden.device)
                h_buf = torch.empty(chunk, hidden_size, dtype=dtype, device=hidden.device)
                for t0 in range(0, n_tokens, TOKEN_CHUNK):
                    t1 = min(n_tokens, t0 + TOKEN_CHUNK)
                    acc.addmm_(grad_z[t0:t1].T, h_buf[: t1 - t0].copy_(hidden[t0:t1]))
                rows.copy_(acc)
        return grad_h, grad_weight, None, None, None, None, None


def _grad_logits(logits, t0, t1, labels, m_all, log_s_all, g_logp, g_ent, out):
    """G = s dL/dz [t1 - t0, bins] for tokens t0:t1 into `out` (compute dtype):
    dL/dz = g (onehot - p) - e p (log p + H), from the recomputed z and the saved (m, log S)."""
    dtype = out.dtype
    log_p = logits(t0, t1).sub_(m_all[t0:t1, None]).sub_(log_s_all[t0:t1, None])
    p = torch.exp(log_p, out=out)
    g = g_logp[t0:t1].to(dtype) if g_logp is not None else torch.zeros(t1 - t0, dtype=dtype, device=out.device)
    if g_ent is not None:
        ent = -(p * log_p).sum(1)
        dz = log_p.add_(ent[:, None]).mul_(-g_ent[t0:t1, None].to(dtype))
        p.mul_(dz.sub_(g[:, None]))
    else:
        p.mul_(-g[:, None])
    return p.scatter_add_(1, labels[t0:t1, None], g[:, None]).mul_(logits.inv_t)


def _native_bf16_backward(hidden, weight, labels, m_all, log_s_all, g_logp, g_ent, inv_t,
                          bin_start, bin_end, need_h, need_w, z=None):
    """bf16 hidden and weight: G [T, bins] fp32 from one native call, then dL/dh = G W_bins
    straight into a bf16 tensor and dL/dW_bins = G^T h straight into the bin rows of the lazily
    zeroed weight gradient (cpu_native.f32_bf16_matmul: fp32 FMAs, one rounding)."""
    w_bins = _rows_contiguous(weight[bin_start:bin_end])
    grad_z = cpu_native.bf16_grad_logits(
        hidden, w_bins, labels, m_all, log_s_all,
        None if g_logp is None else g_logp.to(torch.float32).contiguous(),
        None if g_ent is None else g_ent.to(torch.float32).contiguous(), inv_t, z)
    grad_h = grad_weight = None
    if need_h:
        grad_h = cpu_native.f32_bf16_matmul(grad_z, w_bins, torch.empty_like(hidden))
    if need_w:
        grad_weight = lazy_zeros_like(weight)
        rows = grad_weight[bin_start:bin_end]
        if rows.stride(1) == 1:
            cpu_native.f32_bf16_matmul(grad_z.T, hidden, rows)
        else:
            rows.copy_(cpu_native.f32_bf16_matmul(grad_z.T, hidden, torch.empty_like(w_bins)))
    return grad_h, grad_weight, None, None, None, None, None


def action_logprob_chunked(hidden, weight, labels, temperature, bin_start, bin_end):
    """hidden [T, H], weight [V, H], labels [T] -> (logp, entropy) [T]; autograd-aware."""
    # Keep z for the backward only when one will run (decided here: inside forward, grad mode
    # is always off, and rollouts call this under no_grad with parameters that require grad).
    save_z = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return ChunkedActionLogprobFunction.apply(hidden, weight, labels, temperature, bin_start,
                                              bin_end, save_z)
