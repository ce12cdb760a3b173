// CPU kernels of the fused action log-prob (vlarl_fast.kernels) for bfloat16 hidden states and
// LM head on CPUs with AVX512-BF16. No Python and no MuJoCo here: csrc/python/kernels/module.cc
// binds them as vlarl_fast._cpu_kernels and kernels/cpu_native.py checks the tensors. Work is
// split into tasks run on a persistent thread pool (task_runner.h).
//
// Notation: h [T, K] hidden states, w [N, K] the N action-bin rows of the LM head, s = 1 /
// temperature, z = s h w^T [T, N] the scaled bin logits, per token m = max_b z, S = sum_b
// exp(z - m), log p = (z - m) - log S.
//
// z is formed with vdpbf16ps: bf16 x bf16 products are exact in fp32 and accumulate in fp32,
// with no conversion pass (torch's CPU matmuls give bf16 x bf16 only as a bf16 result, whose
// 2^-8 rounding is far above the log-prob tolerance, and fp32 x fp32 at half the speed). Every
// z element is one dot product in a fixed order, whatever the thread count or tile position,
// so the backward recomputes exactly the forward's z and results do not depend on threads.
// vdpbf16ps and vcvtneps2bf16 treat denormal inputs as zero and flush denormal results.
#pragma once

#include <cstdint>

namespace vlarl {

// True when this build contains the AVX512-BF16 kernels and the CPU (and OS) can run them.
bool bf16_kernels_supported();

// Forward: per token t, with labels y [T] in [0, N):
//   logp[t] = log p[t, y_t],  entropy[t] = -sum_b p log p = log S - sum_b e^(z - m) (z - m) / S,
//   row_max[t] = m, row_log_sum[t] = log S   (what the backward needs: two floats per token).
// z lives only in a per-task [16, N] buffer: the extra memory is O(threads * N), not O(T * N),
// unless z_out is given: then z [T, N] (row stride ld_out) is written there for the backward,
// which then skips recomputing it (4 N bytes per token, ~1/125 of the full-vocabulary logits).
// ldh / ldw: row strides in elements (rows contiguous). Throws std::runtime_error when
// !bf16_kernels_supported() and std::invalid_argument on bad sizes or labels.
void action_logprob_bf16_forward(const std::uint16_t* h, std::int64_t ldh, const std::uint16_t* w,
                                 std::int64_t ldw, const std::int64_t* labels, std::int64_t t,
                                 std::int64_t n, std::int64_t k, float scale, float* logp,
                                 float* entropy, float* row_max, float* row_log_sum,
                                 int num_threads, float* z_out = nullptr, std::int64_t ld_out = 0);

// Backward, first half: G = s dL/dz [T, N] fp32 (row stride ldg) from the forward's row_max and
// row_log_sum and the upstream gradients g_logp, g_ent [T] (either may be null: zero):
//   dL/dz = g (onehot(y) - p) - e p (log p + H),  H = -sum_b p log p.
// z is read from z_in (the forward's z_out, row stride ld_in) when given, else recomputed bit
// for bit. The second half is f32_bf16_gemm: dL/dh = G w, dL/dw = G^T h.
void action_logprob_bf16_grad_logits(const std::uint16_t* h, std::int64_t ldh,
                                     const std::uint16_t* w, std::int64_t ldw,
                                     const std::int64_t* labels, const float* row_max,
                                     const float* row_log_sum, const float* g_logp,
                                     const float* g_ent, std::int64_t t, std::int64_t n,
                                     std::int64_t k, float scale, float* grad_z, std::int64_t ldg,
                                     int num_threads, const float* z_in = nullptr,
                                     std::int64_t ld_in = 0);

// out[i * ldo + j] = bf16(sum_l a[i * a_si + l * a_sl] * b[l * ldb + j]) for i < m, j < n,
// l < k: fp32 a (any strides, so a or its transpose), bf16 b rows, fp32 FMAs in ascending l,
// one round-to-nearest-even to bf16 at the end. dL/dh = G w (a = G) and dL/dw = G^T h
// (a = G^T) with G kept in fp32: both are sums whose terms can cancel (every token's G sums to
// zero over the bins, so G w cancels whatever all bin rows share), and a bf16 G would carry
// its 2^-8 rounding errors into them. No fp32 copy of w or h, no fp32 result buffer.
void f32_bf16_gemm(const float* a, std::int64_t a_si, std::int64_t a_sl, const std::uint16_t* b,
                   std::int64_t ldb, std::uint16_t* out, std::int64_t ldo, std::int64_t m,
                   std::int64_t n, std::int64_t k, int num_threads);

}  // namespace vlarl
