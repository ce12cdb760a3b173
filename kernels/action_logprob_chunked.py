"""PyTorch CPU path of the action log-prob: an autograd Function that walks the tokens in
chunks and saves only two numbers per token (max and log-sum-exp parts), so neither the full-vocabulary logits nor an
fp32 copy of the hidden states ever exist.

Same maths as action_logprob.py (see there). Forward, per chunk of TOKEN_CHUNK tokens:
    z = s * sum over hidden slices of h[:, k].float() @ W_bins[:, k].float().T     fp32
    m = max z, log S = log sum exp(z - m), log p = (z - m) - log S
saves (m, log S) [T] fp32 and returns logp, entropy. Backward recomputes z chunk by chunk with
the same operations (bit-identical), forms G = s * dL/dz and accumulates
    dL/dh[chunk] = G @ W_bins      dL/dW_bins += G^T @ h[chunk]
in fp32. Extra memory: one [TOKEN_CHUNK, 256] tile plus one [TOKEN_CHUNK + 256, HIDDEN_SLICE]
fp32 slice pair in the forward; the backward adds the fp32 W_bins and weight-row gradient.
float64 inputs are computed in float64.
"""

from __future__ import annotations

import torch

TOKEN_CHUNK = 256
HIDDEN_SLICE = 1024


def _scaled_logits(h_chunk, w_bins, inv_temperature, dtype):
    """z [tokens, bins] = s * h w^T accumulated over hidden slices in `dtype`."""
    z = None
    for k0 in range(0, h_chunk.shape[1], HIDDEN_SLICE):
        part = h_chunk[:, k0:k0 + HIDDEN_SLICE].to(dtype) @ w_bins[:, k0:k0 + HIDDEN_SLICE].to(dtype).T
        z = part if z is None else z.add_(part)
    if z is None:  # hidden size 0
        z = torch.zeros(h_chunk.shape[0], w_bins.shape[0], dtype=dtype, device=h_chunk.device)
    return z.mul_(inv_temperature)


def _log_softmax_parts(z):
    m = z.max(dim=1).values
    shifted = z - m[:, None]
    log_s = shifted.exp().sum(dim=1).log()
    return m, log_s, shifted.sub_(log_s[:, None])  # log p


class ChunkedActionLogprobFunction(torch.autograd.Function):
    """(hidden [T, H], weight [V, H], labels [T]) -> (logp [T], entropy [T])."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, bin_start, bin_end):
        dtype = torch.float64 if torch.float64 in (hidden.dtype, weight.dtype) else torch.float32
        w_bins = weight[bin_start:bin_end]
        inv_t = 1.0 / temperature
        n_tokens = hidden.shape[0]
        logp = torch.empty(n_tokens, dtype=dtype, device=hidden.device)
        entropy = torch.empty_like(logp)
        m_all = torch.empty_like(logp)
        log_s_all = torch.empty_like(logp)
        for t0 in range(0, n_tokens, TOKEN_CHUNK):
            sl = slice(t0, t0 + TOKEN_CHUNK)
            z = _scaled_logits(hidden[sl], w_bins, inv_t, dtype)
            m, log_s, log_p = _log_softmax_parts(z)
            logp[sl] = log_p.gather(1, labels[sl].long()[:, None])[:, 0]
            entropy[sl] = -(log_p.exp() * log_p).sum(1)
            m_all[sl], log_s_all[sl] = m, log_s
        ctx.save_for_backward(hidden, weight, labels, m_all, log_s_all)
        ctx.args = (temperature, bin_start, bin_end, dtype)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, labels, m_all, log_s_all = ctx.saved_tensors
        temperature, bin_start, bin_end, dtype = ctx.args
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w_bins = weight[bin_start:bin_end]
        w_f = w_bins.to(dtype)
        inv_t = 1.0 / temperature
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w_bins = torch.zeros_like(w_f) if need_w else None
        for t0 in range(0, hidden.shape[0], TOKEN_CHUNK):
            sl = slice(t0, t0 + TOKEN_CHUNK)
            z = _scaled_logits(hidden[sl], w_bins, inv_t, dtype)
            log_p = z.sub_(m_all[sl, None]).sub_(log_s_all[sl, None])
            p = log_p.exp()
            dz = -p
            if g_logp is not None:
                dz.mul_(g_logp[sl, None].to(dtype))
                dz.scatter_add_(1, labels[sl].long()[:, None], g_logp[sl, None].to(dtype))
            else:
                dz.zero_()
            if g_ent is not None:
                entropy = -(p * log_p).sum(1, keepdim=True)
                dz.sub_(g_ent[sl, None].to(dtype) * p * (log_p + entropy))
            dz.mul_(inv_t)
            if need_h:
                grad_h[sl] = (dz @ w_f).to(hidden.dtype)
            if need_w:
                grad_w_bins.add_(dz.T @ hidden[sl].to(dtype))
        grad_weight = None
        if need_w:
            grad_weight = torch.zeros_like(weight)
            grad_weight[bin_start:bin_end] = grad_w_bins.to(weight.dtype)
        return grad_h, grad_weight, None, None, None, None


def action_logprob_chunked(hidden, weight, labels, temperature, bin_start, bin_end):
    """hidden [T, H], weight [V, H], labels [T] -> (logp, entropy) [T]; autograd-aware."""
    return ChunkedActionLogprobFunction.apply(hidden, weight, labels, temperature, bin_start,
                                              bin_end)
