"""CPU helpers of the PyTorch path: the native AVX512-BF16 kernels and lazily zeroed gradients.

Native kernels (csrc/kernels/action_logprob_cpu.h, bound as `vlarl_fast._cpu_kernels`, loaded by
_native_loader without MuJoCo or the physics core), for bf16 hidden states and LM head on CPUs
with AVX512-BF16, on a persistent thread pool (csrc/kernels/task_runner.h):
    bf16_forward(h, w, labels, scale, save_logits=False)
        logp, entropy and the per-token (max, log-sum-exp) of z = scale h w^T, with z formed by
        vdpbf16ps (bf16 products exact in fp32, fp32 accumulation) in per-thread [16, N]
        blocks: no fp32 copy of anything, O(T) memory; with save_logits, z [T, N] fp32 too
        (what the autograd Function keeps when a gradient will be needed). torch's CPU matmuls offer bf16 x bf16
        only with a bf16 result (2^-8 rounding, far above the log-prob tolerance) and
        fp32 x fp32 at half the speed after converting the operands.
    bf16_grad_logits(h, w, labels, row_max, row_log_sum, g_logp, g_ent, scale, z=None)
        G = scale dL/dz [T, N] fp32, from the saved z or z recomputed bit for bit.
    f32_bf16_matmul(a, b, out)
        bf16 out = fp32 a @ bf16 b by fp32 FMAs, one rounding at the end: dL/dh = G W_bins and
        dL/dW_bins = G^T h without fp32 copies of W_bins or h and with G kept in fp32.
They run where the native kernels are built, the CPU has AVX512-BF16, VLARL_CPU_NATIVE is not 0
and torch.compile is not tracing (`native_bf16_applies`); action_logprob_chunked falls back to
torch fp32 matmuls otherwise. Threads: torch.get_num_threads().

lazy_zeros_like(t)
    A zero tensor whose pages are not touched until written (see its docstring).
"""

from __future__ import annotations

import mmap
import os

import torch

from . import _native_loader

NATIVE_ENV_VAR = "VLARL_CPU_NATIVE"

# Below this size a dense gradient is cheaper to zero-fill than to map lazily.
LAZY_ZERO_MIN_BYTES = 1 << 20

_native_module = None
_native_checked = False
_KERNEL_NAMES = ("action_logprob_bf16_forward", "action_logprob_bf16_grad_logits",
                 "f32_bf16_gemm", "bf16_kernels_supported")


def _plain(t: torch.Tensor) -> bool:
    """A real CPU tensor with storage (no FakeTensor / functional / DTensor wrapper)."""
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu"


def _load_native():
    global _native_module, _native_checked
    if not _native_checked:
        _native_checked = True
        C = _native_loader.load()
        if C is not None and all(hasattr(C, n) for n in _KERNEL_NAMES) \
                and C.bf16_kernels_supported():
            _native_module = C
    return _native_module


def native_bf16_available() -> bool:
    """True when the native kernels can run here (built, AVX512-BF16, not disabled)."""
    if os.environ.get(NATIVE_ENV_VAR, "1").strip() in ("0", "false", "off"):
        return False
    return _load_native() is not None


def native_bf16_applies(*tensors: torch.Tensor) -> bool:
    """The native kernels can take these tensors: plain bf16 CPU tensors, not while
    torch.compile traces (raw addresses are not traceable), kernels available."""
    return (all(_plain(t) and t.dtype == torch.bfloat16 for t in tensors)
            and not torch.compiler.is_compiling() and native_bf16_available())


def _check_rows(**tensors) -> None:
    for name, t in tensors.items():
        if not _plain(t) or (t.numel() and t.stride(-1) != 1):
            raise ValueError(f"{name} must be a CPU tensor with contiguous rows, got strides "
                             f"{t.stride()} on {t.device}")


def _native():
    C = _load_native()
    if C is None:
        raise RuntimeError("the native AVX512-BF16 kernels are not available")
    return C


def _check_bf16_problem(h, w, labels):
    if h.dtype != torch.bfloat16 or w.dtype != torch.bfloat16 or labels.dtype != torch.int64:
        raise TypeError(f"expected bf16 h, w and int64 labels, got {h.dtype}, {w.dtype}, "
                        f"{labels.dtype}")
    if h.dim() != 2 or w.dim() != 2 or h.shape[1] != w.shape[1] or w.shape[0] < 1 \
            or tuple(labels.shape) != (h.shape[0],):
        raise ValueError(f"shapes do not match: h {tuple(h.shape)} [T, H], w {tuple(w.shape)} "
                         f"[N, H], labels {tuple(labels.shape)} [T]")
    _check_rows(h=h, w=w, labels=labels)


def bf16_forward(h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, scale: float,
                 save_logits: bool = False):
    """h [T, H], w [N, H] bf16 (rows contiguous), labels [T] int64 in [0, N) ->
    (logp, entropy, row_max, row_log_sum), each [T] fp32, and with `save_logits` also
    z = scale h w^T [T, N] fp32 (for the backward; None otherwise)."""
    C = _native()
    _check_bf16_problem(h, w, labels)
    out = [torch.empty(h.shape[0], dtype=torch.float32) for _ in range(4)]  # separate tensors
    z = torch.empty(h.shape[0], w.shape[0], dtype=torch.float32) if save_logits else None
    if h.shape[0]:
        C.action_logprob_bf16_forward(
            h.data_ptr(), max(h.stride(0), h.shape[1]), w.data_ptr(), max(w.stride(0), w.shape[1]),
            labels.data_ptr(), h.shape[0], w.shape[0], h.shape[1], float(scale),
            *(t.data_ptr() for t in out), torch.get_num_threads(),
            0 if z is None else z.data_ptr(), w.shape[0])
    return (*out, z)


def bf16_grad_logits(h, w, labels, row_max, row_log_sum, g_logp, g_ent, scale: float,
                     z: torch.Tensor | None = None):
    """G = scale dL/dz [T, N] fp32 for the forward's (row_max, row_log_sum) and the upstream
    gradients g_logp, g_ent [T] (None: zero); z: the forward's saved logits (None: recomputed,
    bit for bit the same)."""
    C = _native()
    _check_bf16_problem(h, w, labels)
    n_tokens = h.shape[0]
    stats = [row_max, row_log_sum] + [g for g in (g_logp, g_ent) if g is not None]
    for t in stats:
        if t.dtype != torch.float32 or tuple(t.shape) != (n_tokens,) or not t.is_contiguous():
            raise ValueError(f"row statistics and upstream gradients must be contiguous fp32 "
                             f"[{n_tokens}], got {t.dtype} {tuple(t.shape)}")
    if z is not None and (z.dtype != torch.float32 or tuple(z.shape) != (n_tokens, w.shape[0])
                          or not z.is_contiguous()):
        raise ValueError(f"saved logits must be contiguous fp32 [{n_tokens}, {w.shape[0]}], got "
                         f"{z.dtype} {tuple(z.shape)}")
    grad_z = torch.empty(n_tokens, w.shape[0], dtype=torch.float32)
    if n_tokens:
        C.action_logprob_bf16_grad_logits(
            h.data_ptr(), max(h.stride(0), h.shape[1]), w.data_ptr(), max(w.stride(0), w.shape[1]),
            labels.data_ptr(), row_max.data_ptr(), row_log_sum.data_ptr(),
            0 if g_logp is None else g_logp.data_ptr(), 0 if g_ent is None else g_ent.data_ptr(),
            n_tokens, w.shape[0], h.shape[1], float(scale), grad_z.data_ptr(), w.shape[0],
            torch.get_num_threads(), 0 if z is None else z.data_ptr(), w.shape[0])
    return grad_z


def f32_bf16_matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out [M, N] bf16 = a [M, K] fp32 (any strides, e.g. a transpose) @ b [K, N] bf16 (rows
    contiguous): fp32 products and accumulation, one round-to-nearest-even to bf16. Returns out."""
    C = _native()
    m, k = a.shape
    n = b.shape[1]
    if a.dtype != torch.float32 or b.dtype != torch.bfloat16 or out.dtype != torch.bfloat16:
        raise TypeError(f"expected fp32 a, bf16 b and bf16 out, got {a.dtype}, {b.dtype}, "
                        f"{out.dtype}")
    if b.shape[0] != k or tuple(out.shape) != (m, n):
        raise ValueError(f"shapes do not match: a {tuple(a.shape)}, b {tuple(b.shape)}, "
                         f"out {tuple(out.shape)}")
    _check_rows(b=b, out=out)
    if not _plain(a):
        raise ValueError(f"a must be a CPU tensor, got {a.device}")
    if m and n:
        C.f32_bf16_gemm(a.data_ptr(), a.stride(0), a.stride(1), b.data_ptr(),
                        max(b.stride(0), n), out.data_ptr(), max(out.stride(0), n), m, n, k,
                        torch.get_num_threads())
    return out


def lazy_zeros_like(t: torch.Tensor) -> torch.Tensor:
    """torch.zeros_like(t) for a large contiguous CPU tensor, without touching its memory.

    The memory is a fresh anonymous mapping, whose pages the kernel guarantees to read as
    zero: they cost nothing until written, and reading an untouched page maps the shared zero
    page. So the dense [V, H] weight gradient that autograd requires for an op taking the full
    LM-head weight (250 MB in bf16 at OpenVLA-OFT sizes, of which the action log-prob writes
    256 rows) no longer costs a 250 MB zero-fill (~120 ms on one core, more than the whole
    fused op) nor 250 MB of resident memory. The result is an ordinary tensor: AccumulateGrad
    adopts it as `.grad` without a copy, a later backward adds into it in place, optimizers,
    torch.save and FSDP reductions read it (as zeros) like any other. Falls back to
    torch.zeros_like for small, non-contiguous, non-CPU or traced tensors.
    """
    nbytes = t.numel() * t.element_size()
    if (nbytes < LAZY_ZERO_MIN_BYTES or not _plain(t) or not t.is_contiguous()
            or torch.compiler.is_compiling()):
        return torch.zeros_like(t)
    # an anonymous private mapping (4 KiB pages, no transparent-huge-page advice, so a write
    # never waits for memory compaction), unmapped when the last tensor on it dies
    raw = torch.frombuffer(mmap.mmap(-1, nbytes), dtype=torch.uint8)
    # a tensor of its own (not a view) on that storage, with t's shape and dtype
    return torch.empty(0, dtype=t.dtype).set_(raw.untyped_storage(), 0, t.shape)
