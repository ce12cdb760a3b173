"""What ran: the CPU's capabilities and the code paths of the fused ops, for benchmark headers.

    cpu_capabilities()   model name, torch's ATen CPU capability, the ISA flags that decide
                         where torch's bf16 matmuls run, vlarl-fast's native bf16 kernels
    cpu_line()           the same as one line
    logprob_path(...)    the path vlarl_fast.kernels.action_logprob takes for given dtypes/device
    kernel_paths_line()  "action log-prob: ...; GRPO loss: ..." for a model dtype and device

Where torch's bf16 matmuls run on x86 (ATen's CPUBlas): oneDNN when the CPU has AVX512
(avx512f/bw/vl/dq; natively with AVX512-BF16 or AMX-BF16, emulated on plain AVX512), else ATen's
generic GEMM, which emulates bf16 element by element (on an AVX2-only AMD EPYC the bf16
dL/dh = G W of a 56-token full-vocabulary backward took 97 s against 0.36 s in fp32).
"""

from __future__ import annotations

import platform

import torch


def cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo ("Features" on ARM); empty flags elsewhere."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_capabilities() -> dict:
    from vlarl_fast.kernels.cpu_native import native_bf16_available

    name, flags = cpuinfo()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    if not x86:
        bf16_matmul = "torch bf16 GEMM" + (" (bf16 in the CPU's features)" if "bf16" in flags else "")
    elif "amx_bf16" in flags:
        bf16_matmul = "oneDNN bf16 GEMM on AMX-BF16"
    elif "avx512_bf16" in flags:
        bf16_matmul = "oneDNN bf16 GEMM on AVX512-BF16"
    elif avx512:
        bf16_matmul = "oneDNN bf16 GEMM, bf16 emulated on AVX512"
    else:
        bf16_matmul = "ATen's generic bf16 GEMM, bf16 emulated (no oneDNN bf16 without AVX512)"
    shown = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx", "avx2", "fma",
                                                                                  "bf16", "sve", "asimd"))
    return dict(model=name, torch_capability=torch.backends.cpu.get_cpu_capability(), flags=shown,
                avx512=avx512, avx512_bf16="avx512_bf16" in flags, amx_bf16="amx_bf16" in flags,
                native=native_bf16_available(), bf16_matmul=bf16_matmul)


def cpu_line(cap: dict | None = None) -> str:
    cap = cap or cpu_capabilities()
    return (f"CPU {cap['model']}: torch ATen {cap['torch_capability']}; flags "
            f"{' '.join(cap['flags']) or '(none of avx/avx2/fma/avx512*/amx*)'}; torch bf16 matmuls: "
            f"{cap['bf16_matmul']}; vlarl-fast native bf16 kernels: "
            f"{'yes' if cap['native'] else 'no (they need AVX512-BF16)'}")


def logprob_path(hidden_dtype: torch.dtype, weight_dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu", backend: str | None = None) -> str:
    """The code path action_logprob takes for these dtypes on `device` (kernels/dispatch.py,
    kernels/action_logprob_chunked.py), decided on one-element tensors of those dtypes."""
    from vlarl_fast.kernels.cpu_native import native_bf16_applies
    from vlarl_fast.kernels.dispatch import select_backend

    weight_dtype = weight_dtype or hidden_dtype
    h = torch.zeros(1, 1, dtype=hidden_dtype, device=device)
    w = torch.zeros(1, 1, dtype=weight_dtype, device=device)
    if select_backend("action_logprob", [h, w], backend) == "triton":
        return "Triton kernels"
    if h.device.type != "cpu":
        return f"PyTorch ops on {h.device.type}"
    if native_bf16_applies(h, w):
        return "native AVX512-BF16 kernels (csrc/kernels/action_logprob_cpu.cc)"
    if hidden_dtype == weight_dtype and hidden_dtype in (torch.float32, torch.float64):
        return f"torch {str(hidden_dtype).removeprefix('torch.')} ops over 128-token chunks"
    return (f"torch fallback: {str(hidden_dtype).removeprefix('torch.')}/"
            f"{str(weight_dtype).removeprefix('torch.')} inputs converted to fp32 512 columns at a "
            f"time, fp32 matmuls")


def kernel_paths_line(model_dtype: torch.dtype, device: str | torch.device = "cpu") -> str:
    from vlarl_fast.kernels.dispatch import select_backend

    loss = select_backend("grpo_loss", [torch.zeros(1, device=device)])
    return (f"model {str(model_dtype).removeprefix('torch.')} on {torch.device(device).type}; "
            f"action log-prob: {logprob_path(model_dtype, device=device)}; GRPO loss: "
            f"{'Triton kernel' if loss == 'triton' else 'torch ops'}")
