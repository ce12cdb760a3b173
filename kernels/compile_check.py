"""Ahead-of-time compilation of every Triton kernel for NVIDIA targets, without a GPU.

`python -m vlarl_fast.kernels.compile_check 80 90` compiles each kernel, in the dtype and
tile variants the launchers use, to PTX and cubin for sm_80 / sm_90 (ptxas must be on PATH)
and prints one line per variant with the registers and spill bytes ptxas reports. Run it without TRITON_INTERPRET (under the interpreter the
kernels are not JIT functions).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys

from ._triton_setup import HAS_TRITON, triton

_I32_ARGS = {"stride_h", "stride_w", "stride_l", "stride_logp", "stride_old", "stride_adv_row",
             "stride_adv_col", "stride_mask", "n_tokens", "hidden_size", "n_bins", "n_seq",
             "seq_len"}
_F32_ARGS = {"inv_temperature", "ratio_low", "ratio_high", "clip_c", "scale_value"}


def _variants():
    """(module, kernel name, pointer dtypes by argument, constexprs, num_warps): the GPU tiles
    the launchers use, for bf16 and fp32 activations."""
    al = "vlarl_fast.kernels.action_logprob"
    gl = "vlarl_fast.kernels.grpo_loss"
    prec = "tf32x3"
    out = []
    for act in ("bf16", "fp32"):
        ptrs = {"h_ptr": act, "w_ptr": act, "labels_ptr": "i64", "logits_ptr": act,
                "logp_ptr": act, "old_ptr": act, "adv_ptr": act, "mask_ptr": "u8"}
        dot_bf16 = act == "bf16"
        out += [
            (al, "_action_logprob_fwd_kernel", ptrs,
             dict(BLOCK_T=32, BLOCK_N=256, BLOCK_K=64 if dot_bf16 else 32, DOT_BF16=dot_bf16,
                  SAVE_Z=True, FP32_DOT=prec), 8),
            (al, "_action_logprob_bwd_kernel", ptrs,
             dict(BLOCK_T=16, BLOCK_N=256, HAS_GRAD_ENTROPY=True), 8),
            (al, "_action_logprob_bwd_hidden_kernel", ptrs,
             dict(BLOCK_T=64, BLOCK_B=32, BLOCK_K=64, FP32_DOT=prec), 4),
            (al, "_action_logprob_bwd_weight_kernel", ptrs,
             dict(BLOCK_T=32, BLOCK_N=256, BLOCK_K=32, FP32_DOT=prec), 8),
            (al, "_action_logprob_from_logits_fwd_kernel", ptrs, dict(BLOCK_T=32, BLOCK_N=256), 8),
            (al, "_action_logprob_from_logits_bwd_kernel", ptrs,
             dict(BLOCK_T=16, BLOCK_N=256, HAS_GRAD_ENTROPY=True), 8),
        ]
        for scale_mode in ((0, 1, 2) if act == "fp32" else (2,)):
            out.append((gl, "_grpo_loss_fwd_kernel", ptrs,
                        dict(SCALE_MODE=scale_mode, HAS_DUAL_CLIP=True, ROWS=1, BLOCK_L=1024), 4))
        out.append((gl, "_grpo_loss_fwd_kernel", ptrs,
                    dict(SCALE_MODE=1, HAS_DUAL_CLIP=False, ROWS=8, BLOCK_L=128), 4))
    return out


def _signature(kernel, ptr_dtypes, constexprs):
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in _I32_ARGS:
            sig[name] = "i32"
        elif name in _F32_ARGS:
            sig[name] = "fp32"
        elif name.endswith("_ptr"):
            sig[name] = "*" + ptr_dtypes.get(name, "fp32")
        else:
            raise AssertionError(f"no signature rule for argument {name!r} of {kernel.__name__}")
    return sig


def _ptxas_usage(log: str) -> tuple[int, int]:
    """(registers, spill-store bytes) from a `ptxas -v` log; -1 where not reported."""
    regs = re.findall(r"Used (\d+) registers", log)
    spills = re.findall(r"(\d+) bytes spill stores", log)
    return (int(regs[-1]) if regs else -1), (max(int(x) for x in spills) if spills else -1)


def compile_all(capabilities=(80, 90)) -> list[dict]:
    """Compiles every kernel variant for each capability (always through ptxas, never from
    Triton's cache); returns one record each: target, kernel, constexprs, cubin bytes, shared
    memory, registers and spill-store bytes reported by ptxas."""
    if not HAS_TRITON:
        raise RuntimeError("compile_check needs triton installed")
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    knobs.compilation.always_compile = True
    knobs.nvidia.dump_ptxas_log = True
    records = []
    for module_name, kernel_name, ptrs, constexprs, num_warps in _variants():
        kernel = getattr(importlib.import_module(module_name), kernel_name)
        if not isinstance(kernel, triton.runtime.JITFunction):
            raise RuntimeError(f"{kernel_name} is not a JIT function (is TRITON_INTERPRET set?)")
        src = ASTSource(kernel, _signature(kernel, ptrs, constexprs), constexprs=constexprs)
        for cc in capabilities:
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                                          options={"num_warps": num_warps})
            regs, spills = _ptxas_usage(log.getvalue())
            records.append(dict(target=f"sm_{cc}", kernel=kernel_name,
                                act=ptrs["h_ptr"], constexprs=constexprs,
                                cubin_bytes=len(compiled.asm.get("cubin", b"")),
                                shared=compiled.metadata.shared, registers=regs,
                                spill_bytes=spills))
    return records


if __name__ == "__main__":
    caps = tuple(int(a) for a in sys.argv[1:]) or (80, 90)
    for r in compile_all(caps):
        print(f"{r['target']} {r['kernel']:42s} {r['act']:4s} regs={r['registers']:3d} "
              f"spill={r['spill_bytes']}B shared={r['shared']}B cubin={r['cubin_bytes']}B "
              f"{r['constexprs']}")
