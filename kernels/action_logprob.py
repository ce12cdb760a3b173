"""Fused action log-probability: hidden states x action-bin rows of the LM head -> log-prob of
the label bin and entropy, never materialising the full-vocabulary logits.

Maths, per token t (bins b = 0..N-1, N = bin_end - bin_start, tau = temperature, s = 1/tau):
    z_tb   = s * sum_k h_tk W[bin_start + b, k]                      fp32 accumulation
    m_t    = max_b z_tb,  S_t = sum_b exp(z_tb - m_t)
    log p_tb = (z_tb - m_t) - log S_t                 (never z - lse: z reaches 1e10 when the
                                                       temperature is tiny and fp32 keeps no digit)
    logp_t = log p_t,label,   H_t = -sum_b p_tb log p_tb
Gradient, with upstream g_t = dL/dlogp_t and e_t = dL/dH_t:
    dL/dz_tb = g_t (1[b = label_t] - p_tb) - e_t p_tb (log p_tb + H_t)
    G_tb     = s * dL/dz_tb
    dL/dh_t  = sum_b G_tb W[bin_start + b]            dL/dW[bin_start + b] = sum_t G_tb h_t
    rows of W outside the bins get zero gradient.
Kernels:
    forward  : one program per BLOCK_T tokens; z tile [BLOCK_T, BLOCK_N] accumulated over the
               hidden dim in BLOCK_K chunks; saves z (fp32 [T, N], 1/8 of a bf16 hidden for
               H=4096, N=256) when a backward will follow.
    backward : (a) per token tile: softmax and G recomputed from the saved z, G stored to an
                   fp32 [T, N] buffer (z survives: retain_graph works);
               (b) per [tokens x hidden] tile: dL/dh = G W_bins, a loop over bins;
               (c) per hidden-dim tile: dL/dW_bins = G^T h, a deterministic loop over tokens.
bf16 inputs are converted to fp32 right after each load (the interpreter and the GPU then do
the same arithmetic); on a GPU the forward dot runs on the bf16 operands instead, whose products
are exact in fp32, so only the summation order differs. fp32 dots on the GPU use three TF32
passes ("tf32x3", relative error ~1e-6), in the interpreter plain fp32.
Gradients are written in fp32 and cast to the input dtypes by torch (round-to-nearest).

The logits variant reads z_tb = s * logits[t, bin_start + b] and returns dL/dlogits (zeros
outside the bins).
"""

from __future__ import annotations

import os

import torch

from . import _checks
from ._triton_setup import HAS_TRITON, interpreting, next_pow2, tl, triton
from .dispatch import select_backend
from .action_logprob_chunked import action_logprob_chunked
from .cpu_native import lazy_zeros_like
from .reference import action_logprob_from_logits_torch

# One tile holds all bins of a token; beyond this the PyTorch path is used.
MAX_TRITON_BINS = 1024

if HAS_TRITON:

    @triton.jit
    def _binned_log_softmax(z, col_ok):
        """z [BT, BN] scaled logits -> (log p [BT, BN] with 0 at invalid columns, p).
        Computed as (z - m) - log S, never as z - lse: for scaled logits near 1e10 (tiny
        temperatures) z - lse loses every digit in fp32."""
        z = tl.where(col_ok, z, float("-inf"))
        m = tl.max(z, 1)
        shifted = tl.where(col_ok, z - m[:, None], 0.0)
        e = tl.where(col_ok, tl.exp(shifted), 0.0)
        s = tl.sum(e, 1)
        log_p = tl.where(col_ok, shifted - tl.log(s)[:, None], 0.0)
        p = e / s[:, None]
        return log_p, p

    @triton.jit
    def _binned_forward(z, col_ok, cols, labels):
        """z [BT, BN] scaled logits (any value at invalid columns) -> logp, entropy [BT]."""
        log_p, p = _binned_log_softmax(z, col_ok)
        logp = tl.sum(tl.where(cols[None, :] == labels[:, None], log_p, 0.0), 1)
        entropy = -tl.sum(p * log_p, 1)
        return logp, entropy

    @triton.jit
    def _binned_backward(z, col_ok, cols, labels, g_logp, g_ent, inv_temperature,
                         HAS_GRAD_ENTROPY: tl.constexpr):
        """dL/d(raw logit) [BT, BN] for the scaled logits z; zero at invalid columns."""
        log_p, p = _binned_log_softmax(z, col_ok)
        onehot = tl.where(cols[None, :] == labels[:, None], 1.0, 0.0)
        dz = g_logp[:, None] * (onehot - p)
        if HAS_GRAD_ENTROPY:
            entropy = -tl.sum(p * log_p, 1)
            dz -= g_ent[:, None] * p * (log_p + entropy[:, None])
        return tl.where(col_ok, dz * inv_temperature, 0.0)

    @triton.jit
    def _action_logprob_fwd_kernel(
        h_ptr, stride_h, w_ptr, stride_w, labels_ptr,
        logp_ptr, entropy_ptr, z_ptr,
        n_tokens, hidden_size, n_bins, inv_temperature,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        DOT_BF16: tl.constexpr, SAVE_Z: tl.constexpr, FP32_DOT: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.arange(0, BLOCK_N)
        ks = tl.arange(0, BLOCK_K)
        row_ok = rows < n_tokens
        col_ok1 = cols < n_bins
        acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, hidden_size, BLOCK_K):
            k = k0 + ks
            k_ok = k < hidden_size
            h = tl.load(h_ptr + rows[:, None].to(tl.int64) * stride_h + k[None, :],
                        mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            w_t = tl.load(w_ptr + cols[None, :].to(tl.int64) * stride_w + k[:, None],
                          mask=col_ok1[None, :] & k_ok[:, None], other=0.0)
            if DOT_BF16:
                acc = tl.dot(h, w_t, acc)
            else:
                acc = tl.dot(h.to(tl.float32), w_t.to(tl.float32), acc, input_precision=FP32_DOT)
        z = acc * inv_temperature
        labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        col_ok = col_ok1[None, :]
        logp, entropy = _binned_forward(z, col_ok, cols, labels)
        tl.store(logp_ptr + rows, logp, mask=row_ok)
        tl.store(entropy_ptr + rows, entropy, mask=row_ok)
        if SAVE_Z:
            tl.store(z_ptr + rows[:, None].to(tl.int64) * n_bins + cols[None, :], z,
                     mask=row_ok[:, None] & col_ok)

    @triton.jit
    def _action_logprob_bwd_kernel(
        z_ptr, dz_ptr, labels_ptr, g_logp_ptr, g_ent_ptr,
        n_tokens, n_bins, inv_temperature,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, HAS_GRAD_ENTROPY: tl.constexpr,
    ):
        """G = dL/d(raw logits) [T, N] from the saved scaled logits z (elementwise per row)."""
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.arange(0, BLOCK_N)
        row_ok = rows < n_tokens
        col_ok = (cols < n_bins)[None, :]
        tile_offsets = rows[:, None].to(tl.int64) * n_bins + cols[None, :]
        tile_ok = row_ok[:, None] & col_ok
        z = tl.load(z_ptr + tile_offsets, mask=tile_ok, other=0.0)
        labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        g_logp = tl.load(g_logp_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        if HAS_GRAD_ENTROPY:
            g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        else:
            g_ent = g_logp
        dz = _binned_backward(z, col_ok, cols, labels, g_logp, g_ent, inv_temperature,
                              HAS_GRAD_ENTROPY)
        tl.store(dz_ptr + tile_offsets, dz, mask=tile_ok)

    @triton.jit
    def _action_logprob_bwd_hidden_kernel(
        dz_ptr, w_ptr, stride_w, grad_h_ptr,
        n_tokens, hidden_size, n_bins,
        BLOCK_T: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
        FP32_DOT: tl.constexpr,
    ):
        """dL/dh [T, H] = G [T, N] @ W_bins [N, H]; one [BLOCK_T, BLOCK_K] tile per program."""
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        bs = tl.arange(0, BLOCK_B)
        row_ok = rows < n_tokens
        k_ok = k < hidden_size
        acc = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.float32)
        for b0 in range(0, n_bins, BLOCK_B):
            b = b0 + bs
            b_ok = b < n_bins
            dz = tl.load(dz_ptr + rows[:, None].to(tl.int64) * n_bins + b[None, :],
                         mask=row_ok[:, None] & b_ok[None, :], other=0.0)
            w = tl.load(w_ptr + b[:, None].to(tl.int64) * stride_w + k[None, :],
                        mask=b_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
            acc = tl.dot(dz, w, acc, input_precision=FP32_DOT)
        tl.store(grad_h_ptr + rows[:, None].to(tl.int64) * hidden_size + k[None, :], acc,
                 mask=row_ok[:, None] & k_ok[None, :])

    @triton.jit
    def _action_logprob_bwd_weight_kernel(
        dz_ptr, h_ptr, stride_h, grad_w_ptr,
        n_tokens, hidden_size, n_bins,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, FP32_DOT: tl.constexpr,
    ):
        k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
        cols = tl.arange(0, BLOCK_N)
        ts = tl.arange(0, BLOCK_T)
        k_ok = k < hidden_size
        col_ok = cols < n_bins
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for t0 in range(0, n_tokens, BLOCK_T):
            t = t0 + ts
            t_ok = t < n_tokens
            dz_t = tl.load(dz_ptr + t[None, :].to(tl.int64) * n_bins + cols[:, None],
                           mask=col_ok[:, None] & t_ok[None, :], other=0.0)
            h = tl.load(h_ptr + t[:, None].to(tl.int64) * stride_h + k[None, :],
                        mask=t_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
            acc = tl.dot(dz_t, h, acc, input_precision=FP32_DOT)
        tl.store(grad_w_ptr + cols[:, None].to(tl.int64) * hidden_size + k[None, :], acc,
                 mask=col_ok[:, None] & k_ok[None, :])

    @triton.jit
    def _action_logprob_from_logits_fwd_kernel(
        logits_ptr, stride_l, labels_ptr, logp_ptr, entropy_ptr,
        n_tokens, n_bins, inv_temperature,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.arange(0, BLOCK_N)
        row_ok = rows < n_tokens
        col_ok = (cols < n_bins)[None, :]
        x = tl.load(logits_ptr + rows[:, None].to(tl.int64) * stride_l + cols[None, :],
                    mask=row_ok[:, None] & col_ok, other=0.0).to(tl.float32)
        labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        logp, entropy = _binned_forward(x * inv_temperature, col_ok, cols, labels)
        tl.store(logp_ptr + rows, logp, mask=row_ok)
        tl.store(entropy_ptr + rows, entropy, mask=row_ok)

    @triton.jit
    def _action_logprob_from_logits_bwd_kernel(
        logits_ptr, stride_l, labels_ptr, g_logp_ptr, g_ent_ptr, grad_ptr,
        n_tokens, n_bins, inv_temperature,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, HAS_GRAD_ENTROPY: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.arange(0, BLOCK_N)
        row_ok = rows < n_tokens
        col_ok = (cols < n_bins)[None, :]
        tile_ok = row_ok[:, None] & col_ok
        x = tl.load(logits_ptr + rows[:, None].to(tl.int64) * stride_l + cols[None, :],
                    mask=tile_ok, other=0.0).to(tl.float32)
        labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1).to(tl.int32)
        g_logp = tl.load(g_logp_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        if HAS_GRAD_ENTROPY:
            g_ent = tl.load(g_ent_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        else:
            g_ent = g_logp
        dz = _binned_backward(x * inv_temperature, col_ok, cols, labels, g_logp, g_ent,
                              inv_temperature, HAS_GRAD_ENTROPY)
        tl.store(grad_ptr + rows[:, None].to(tl.int64) * n_bins + cols[None, :], dz, mask=tile_ok)


# fp32 tl.dot precision on the GPU: three TF32 passes (hi*hi + hi*lo + lo*hi), about fp32
# accuracy on tensor cores; plain "ieee" fp32 FMA spills registers at these tiles on sm_90.
# The interpreter computes these dots in fp32.
FP32_DOT = os.environ.get("VLARL_TRITON_FP32_DOT", "tf32x3")  # tf32x3 | ieee | tf32 (diagnostics)


def _tiles(n_tokens: int, n_bins: int, hidden_size: int) -> dict:
    block_n = next_pow2(n_bins)
    if interpreting():  # ~1 ms per program: few, large tiles
        hk = min(next_pow2(hidden_size), 256)
        return dict(BLOCK_T=min(next_pow2(n_tokens), 64), BLOCK_N=block_n, BLOCK_K=hk,
                    W_BLOCK_T=min(next_pow2(n_tokens), 64), W_BLOCK_K=hk, num_warps=4,
                    EW_BLOCK_T=min(next_pow2(n_tokens), 64),
                    matmul=dict(BLOCK_T=min(next_pow2(n_tokens), 64), BLOCK_B=min(block_n, 64),
                                BLOCK_K=hk, num_warps=4))
    # GPU tiles chosen so that ptxas reports no spills for sm_90 at N=256 (compile_check)
    return dict(BLOCK_T=32 if block_n <= 256 else 16, BLOCK_N=block_n,
                BLOCK_K=64 if block_n <= 256 else 32, W_BLOCK_T=32, W_BLOCK_K=32, num_warps=8,
                EW_BLOCK_T=16 if block_n <= 256 else 8,
                matmul=dict(BLOCK_T=64, BLOCK_B=32, BLOCK_K=64, num_warps=4))


def _row_major(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _zeros_if_none(g, like):
    return torch.zeros_like(like) if g is None else g.contiguous()


def action_logprob_fwd_triton(hidden, w_bins, labels, temperature, save_for_backward):
    """hidden [T, H], w_bins [N, H] -> logp, entropy [T] fp32 and, when saving for the
    backward, the scaled logits z fp32 [T, N] (else None)."""
    n_tokens, hidden_size = hidden.shape
    n_bins = w_bins.shape[0]
    cfg = _tiles(n_tokens, n_bins, hidden_size)
    dev = hidden.device
    logp = torch.empty(n_tokens, dtype=torch.float32, device=dev)
    entropy = torch.empty(n_tokens, dtype=torch.float32, device=dev)
    z = torch.empty((n_tokens, n_bins) if save_for_backward else (1,), dtype=torch.float32,
                    device=dev)
    dot_bf16 = (hidden.dtype == torch.bfloat16 and w_bins.dtype == torch.bfloat16
                and not interpreting())
    if n_tokens:
        grid = (triton.cdiv(n_tokens, cfg["BLOCK_T"]),)
        _action_logprob_fwd_kernel[grid](
            hidden, hidden.stride(0), w_bins, w_bins.stride(0), labels,
            logp, entropy, z, n_tokens, hidden_size, n_bins, 1.0 / temperature,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_N=cfg["BLOCK_N"],
            BLOCK_K=cfg["BLOCK_K"] if dot_bf16 or interpreting() else cfg["BLOCK_K"] // 2,
            DOT_BF16=dot_bf16, SAVE_Z=save_for_backward, FP32_DOT=FP32_DOT,
            num_warps=cfg["num_warps"])
    return logp, entropy, (z if save_for_backward else None)


def action_logprob_bwd_triton(hidden, w_bins, labels, temperature, z, g_logp, g_ent,
                              need_grad_h, need_grad_w):
    """Returns (grad_hidden fp32 [T, H] or None, grad_w_bins fp32 [N, H] or None)."""
    n_tokens, hidden_size = hidden.shape
    n_bins = w_bins.shape[0]
    cfg = _tiles(n_tokens, n_bins, hidden_size)
    dev = hidden.device
    dz = torch.empty((n_tokens, n_bins), dtype=torch.float32, device=dev)
    if n_tokens:
        _action_logprob_bwd_kernel[(triton.cdiv(n_tokens, cfg["EW_BLOCK_T"]),)](
            z, dz, labels, g_logp, g_ent if g_ent is not None else g_logp,
            n_tokens, n_bins, 1.0 / temperature,
            BLOCK_T=cfg["EW_BLOCK_T"], BLOCK_N=cfg["BLOCK_N"], HAS_GRAD_ENTROPY=g_ent is not None,
            num_warps=cfg["num_warps"])
    grad_h = grad_w = None
    mm = cfg["matmul"]
    if need_grad_h:
        grad_h = torch.empty((n_tokens, hidden_size), dtype=torch.float32, device=dev)
        if n_tokens:
            grid = (triton.cdiv(n_tokens, mm["BLOCK_T"]), triton.cdiv(hidden_size, mm["BLOCK_K"]))
            _action_logprob_bwd_hidden_kernel[grid](
                dz, w_bins, w_bins.stride(0), grad_h, n_tokens, hidden_size, n_bins,
                BLOCK_T=mm["BLOCK_T"], BLOCK_B=mm["BLOCK_B"], BLOCK_K=mm["BLOCK_K"],
                FP32_DOT=FP32_DOT, num_warps=mm["num_warps"])
    if need_grad_w:
        grad_w = torch.empty((n_bins, hidden_size), dtype=torch.float32, device=dev)
        grid = (triton.cdiv(hidden_size, cfg["W_BLOCK_K"]),)
        _action_logprob_bwd_weight_kernel[grid](
            dz, hidden, hidden.stride(0), grad_w, n_tokens, hidden_size, n_bins,
            BLOCK_T=cfg["W_BLOCK_T"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["W_BLOCK_K"],
            FP32_DOT=FP32_DOT, num_warps=cfg["num_warps"])
    return grad_h, grad_w


def action_logprob_from_logits_fwd_triton(logits, labels, temperature, bin_start, bin_end):
    """logits [T, V] -> logp, entropy [T] fp32 over logits[:, bin_start:bin_end]."""
    n_tokens = logits.shape[0]
    n_bins = bin_end - bin_start
    dev = logits.device
    logp = torch.empty(n_tokens, dtype=torch.float32, device=dev)
    entropy = torch.empty(n_tokens, dtype=torch.float32, device=dev)
    if n_tokens:
        cfg = _tiles(n_tokens, n_bins, 1)
        bins = logits[:, bin_start:bin_end]
        _action_logprob_from_logits_fwd_kernel[(triton.cdiv(n_tokens, cfg["BLOCK_T"]),)](
            bins, bins.stride(0), labels, logp, entropy, n_tokens, n_bins, 1.0 / temperature,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_N=cfg["BLOCK_N"], num_warps=cfg["num_warps"])
    return logp, entropy


def action_logprob_from_logits_bwd_triton(logits, labels, temperature, bin_start, bin_end,
                                          g_logp, g_ent):
    """Returns dL/dlogits fp32 [T, N] for the bin columns."""
    n_tokens = logits.shape[0]
    n_bins = bin_end - bin_start
    grad_bins = torch.empty((n_tokens, n_bins), dtype=torch.float32, device=logits.device)
    if n_tokens:
        cfg = _tiles(n_tokens, n_bins, 1)
        bins = logits[:, bin_start:bin_end]
        _action_logprob_from_logits_bwd_kernel[(triton.cdiv(n_tokens, cfg["EW_BLOCK_T"]),)](
            bins, bins.stride(0), labels, g_logp, g_logp if g_ent is None else g_ent, grad_bins,
            n_tokens, n_bins, 1.0 / temperature, BLOCK_T=cfg["EW_BLOCK_T"],
            BLOCK_N=cfg["BLOCK_N"], HAS_GRAD_ENTROPY=g_ent is not None,
            num_warps=cfg["num_warps"])
    return grad_bins


class ActionLogprobFunction(torch.autograd.Function):
    """Triton autograd Function: (hidden [T, H], weight [V, H], labels [T]) -> (logp, entropy).
    Saves hidden, weight (references, as F.linear does) and z fp32 [T, N]."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, bin_start, bin_end):
        w_bins = _row_major(weight[bin_start:bin_end])
        logp, entropy, z = action_logprob_fwd_triton(hidden, w_bins, labels, temperature,
                                                     save_for_backward=True)
        ctx.save_for_backward(hidden, weight, labels, z)
        ctx.args = (temperature, bin_start, bin_end)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, labels, z = ctx.saved_tensors
        temperature, bin_start, bin_end = ctx.args
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h, grad_w_bins = action_logprob_bwd_triton(
            hidden, _row_major(weight[bin_start:bin_end]), labels, temperature, z,
            _zeros_if_none(g_logp, labels.to(torch.float32)),
            None if g_ent is None else g_ent.contiguous(), need_h, need_w)
        grad_weight = None
        if need_w:
            grad_weight = lazy_zeros_like(weight)  # CPU: pages untouched outside the bin rows
            grad_weight[bin_start:bin_end] = grad_w_bins.to(weight.dtype)
        grad_hidden = None if grad_h is None else grad_h.to(hidden.dtype)
        return grad_hidden, grad_weight, None, None, None, None


class ActionLogprobFromLogitsFunction(torch.autograd.Function):
    """Triton autograd Function: (logits [T, V], labels [T]) -> (logp, entropy)."""

    @staticmethod
    def forward(ctx, logits, labels, temperature, bin_start, bin_end):
        logp, entropy = action_logprob_from_logits_fwd_triton(logits, labels, temperature,
                                                              bin_start, bin_end)
        ctx.save_for_backward(logits, labels)
        ctx.args = (temperature, bin_start, bin_end)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        logits, labels = ctx.saved_tensors
        temperature, bin_start, bin_end = ctx.args
        grad_bins = action_logprob_from_logits_bwd_triton(
            logits, labels, temperature, bin_start, bin_end,
            _zeros_if_none(g_logp, labels.to(torch.float32)),
            None if g_ent is None else g_ent.contiguous())
        grad_logits = torch.zeros_like(logits)
        grad_logits[:, bin_start:bin_end] = grad_bins.to(logits.dtype)
        return grad_logits, None, None, None, None


def _flatten_tokens(name: str, x: torch.Tensor, trailing: int):
    """[..., *trailing_dims] -> [T, *trailing_dims]; returns the leading shape too."""
    if x.dim() < 1 + trailing:
        raise ValueError(f"{name} must have at least {1 + trailing} dims, got shape {tuple(x.shape)}")
    lead = tuple(x.shape[: x.dim() - trailing])
    return x.reshape(-1, *x.shape[x.dim() - trailing:]), lead


def _finish(logp, entropy, lead, return_entropy):
    if logp.shape != lead:  # only reshape (into a view) when there were leading batch dims
        logp = logp.reshape(lead)
        entropy = None if entropy is None else entropy.reshape(lead)
    return (logp, entropy) if return_entropy else logp


def action_logprob(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                   temperature: float, bin_start: int, bin_end: int,
                   return_entropy: bool = False, backend: str | None = None):
    """Temperature-scaled log-probability of each token's action bin, from final hidden states.

    hidden [..., H] (bf16/fp16/fp32/fp64), weight [V, H] the full LM head, labels [...] bin
    indices in [0, bin_end - bin_start). Only weight rows bin_start:bin_end are read; their
    gradient is returned in the weight's dtype, other rows get zeros.
    Returns logp [...] fp32 (fp64 on the fp64 reference path), or (logp, entropy).
    """
    _checks.check_float("hidden", hidden)
    _checks.check_float("weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape [V, H], got {tuple(weight.shape)}")
    h2, lead = _flatten_tokens("hidden", hidden, 1)
    if h2.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden's last dim must equal weight.shape[1]={weight.shape[1]}, "
                         f"got {h2.shape[1]}")
    n_bins = _checks.check_bins(bin_start, bin_end, weight.shape[0], "weight.shape[0]")
    _checks.check_labels(labels, lead, n_bins)
    _checks.check_same_device(hidden=hidden, weight=weight, labels=labels)
    temperature = _checks.check_temperature(temperature)
    labels1 = labels.reshape(-1)

    fp64 = hidden.dtype == torch.float64 or weight.dtype == torch.float64
    chosen = select_backend(
        "action_logprob", [hidden, weight, labels], backend,
        triton_supports=n_bins <= MAX_TRITON_BINS and not fp64,
        unsupported_reason=f"needs n_bins <= {MAX_TRITON_BINS} (got {n_bins}) and no fp64 input")
    if chosen == "torch":
        logp, entropy = action_logprob_chunked(h2, weight, labels1, temperature, bin_start,
                                               bin_end)
        return _finish(logp, entropy, lead, return_entropy)
    h2 = _row_major(h2)
    labels1 = labels1.contiguous()
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        logp, entropy = ActionLogprobFunction.apply(h2, weight, labels1, temperature,
                                                    bin_start, bin_end)
    else:
        w_bins = _row_major(weight[bin_start:bin_end])
        logp, entropy, _ = action_logprob_fwd_triton(h2, w_bins, labels1, temperature,
                                                     save_for_backward=False)
    return _finish(logp, entropy, lead, return_entropy)


def action_logprob_from_logits(logits: torch.Tensor, labels: torch.Tensor, *,
                               temperature: float, bin_start: int, bin_end: int,
                               return_entropy: bool = False, backend: str | None = None):
    """Same as `action_logprob` for frameworks that already hold logits [..., V]; reads only
    logits[..., bin_start:bin_end]. Gradient to logits is zero outside the bins."""
    _checks.check_float("logits", logits)
    l2, lead = _flatten_tokens("logits", logits, 1)
    n_bins = _checks.check_bins(bin_start, bin_end, l2.shape[1], "logits.shape[-1]")
    _checks.check_labels(labels, lead, n_bins)
    _checks.check_same_device(logits=logits, labels=labels)
    temperature = _checks.check_temperature(temperature)
    labels1 = labels.reshape(-1).contiguous()
    chosen = select_backend(
        "action_logprob_from_logits", [logits, labels], backend,
        triton_supports=n_bins <= MAX_TRITON_BINS and logits.dtype != torch.float64,
        unsupported_reason=f"needs n_bins <= {MAX_TRITON_BINS} (got {n_bins}) and no fp64 input")
    if chosen == "torch":
        out = action_logprob_from_logits_torch(l2, labels1, temperature=temperature,
                                               bin_start=bin_start, bin_end=bin_end,
                                               return_entropy=return_entropy)
        if return_entropy:
            return _finish(out[0], out[1], lead, True)
        return _finish(out, None, lead, False)
    l2 = _row_major(l2)
    if torch.is_grad_enabled() and logits.requires_grad:
        logp, entropy = ActionLogprobFromLogitsFunction.apply(l2, labels1, temperature,
                                                              bin_start, bin_end)
    else:
        logp, entropy = action_logprob_from_logits_fwd_triton(l2, labels1, temperature,
                                                              bin_start, bin_end)
    return _finish(logp, entropy, lead, return_entropy)
