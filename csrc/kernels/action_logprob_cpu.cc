#include "action_logprob_cpu.h"

#include "task_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VLARL_HAVE_AVX512_BF16_KERNEL 1
#include <immintrin.h>
#endif

namespace vlarl {
namespace {

// Tokens per task of the forward / grad-logits kernels: their z block [16, N] stays in L1/L2.
constexpr std::int64_t kTokensPerTask = 16;

#ifdef VLARL_HAVE_AVX512_BF16_KERNEL
// GCC 12's intrinsic headers initialise "undefined" vectors from themselves, which -Wall reports
// as uninitialised once they are inlined into target-attributed functions (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define VLARL_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

// ------------------------------------------------------------------ z = s h w^T (vdpbf16ps)
// Register tile: 4 rows of h x 4 rows of w = 16 zmm accumulators of 16 fp32 lanes each; per
// 32-element step of k, 8 loads feed 16 vdpbf16ps; one transpose-reduction at the end.
constexpr int kTile = 4;

// 16 vectors v[i] -> one vector whose lane i is the sum of the 16 lanes of v[i].
VLARL_TARGET_BF16 inline __m512 transpose_reduce16(const __m512* v) {
  __m512 u[8];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
    u[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  __m512 w[4];
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: [a, b, c, d] partial sums
    const __m512d x = _mm512_castps_pd(u[2 * i]);
    const __m512d y = _mm512_castps_pd(u[2 * i + 1]);
    w[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88),
                                  _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
  const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(w[2], w[3], 0x88),
                                  _mm512_shuffle_f32x4(w[2], w[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
}

// One 4 x 4 tile of z at z (row stride ldz). a[i], b[j] point at rows; rows past the matrix
// repeat its last row and their results are not stored.
VLARL_TARGET_BF16 void tile_4x4(const std::uint16_t* const* a, const std::uint16_t* const* b,
                                std::int64_t k, float scale, float* z, std::int64_t ldz,
                                int rows, int cols) {
  __m512 acc[kTile * kTile];
  for (auto& x : acc) x = _mm512_setzero_ps();
  std::int64_t l = 0;
  for (; l + 32 <= k; l += 32) {
    __m512bh bv[kTile];
    for (int j = 0; j < kTile; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b[j] + l);
    for (int i = 0; i < kTile; ++i) {
      const __m512bh av = (__m512bh)_mm512_loadu_si512(a[i] + l);
      for (int j = 0; j < kTile; ++j) {
        acc[i * kTile + j] = _mm512_dpbf16_ps(acc[i * kTile + j], av, bv[j]);
      }
    }
  }
  if (l < k) {  // tail: masked loads read nothing past the row and give zeros
    const __mmask32 mask = static_cast<__mmask32>((1ull << (k - l)) - 1);
    __m512bh bv[kTile];
    for (int j = 0; j < kTile; ++j) bv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, b[j] + l);
    for (int i = 0; i < kTile; ++i) {
      const __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(mask, a[i] + l);
      for (int j = 0; j < kTile; ++j) {
        acc[i * kTile + j] = _mm512_dpbf16_ps(acc[i * kTile + j], av, bv[j]);
      }
    }
  }
  // lane 4 i + j of the reduced vector is the dot product of a row i with b row j
  const __m512 r = _mm512_mul_ps(transpose_reduce16(acc), _mm512_set1_ps(scale));
  if (rows == kTile && cols == kTile) {
    _mm_storeu_ps(z, _mm512_extractf32x4_ps(r, 0));
    _mm_storeu_ps(z + ldz, _mm512_extractf32x4_ps(r, 1));
    _mm_storeu_ps(z + 2 * ldz, _mm512_extractf32x4_ps(r, 2));
    _mm_storeu_ps(z + 3 * ldz, _mm512_extractf32x4_ps(r, 3));
    return;
  }
  alignas(64) float out[kTile * kTile];
  _mm512_store_ps(out, r);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) z[i * ldz + j] = out[i * kTile + j];
  }
}

// z [rows, n] (row stride ldz) = scale * h[t0 : t0 + rows] w^T, rows <= kTokensPerTask.
VLARL_TARGET_BF16 void logits_block(const std::uint16_t* h, std::int64_t ldh,
                                    const std::uint16_t* w, std::int64_t ldw, std::int64_t t0,
                                    int rows, std::int64_t n, std::int64_t k, float scale,
                                    float* z, std::int64_t ldz) {
  // bin tiles outer: each 4 w rows are read from memory once per task and stay in L1 while the
  // task's (L2-resident) hidden rows go by
  for (std::int64_t j0 = 0; j0 < n; j0 += kTile) {
    const std::uint16_t* bp[kTile];
    for (int j = 0; j < kTile; ++j) bp[j] = w + std::min<std::int64_t>(j0 + j, n - 1) * ldw;
    const int cols = static_cast<int>(std::min<std::int64_t>(kTile, n - j0));
    for (int i0 = 0; i0 < rows; i0 += kTile) {
      const std::uint16_t* ap[kTile];
      for (int i = 0; i < kTile; ++i) ap[i] = h + (t0 + std::min(i0 + i, rows - 1)) * ldh;
      const int tile_rows = std::min(kTile, rows - i0);
      tile_4x4(ap, bp, k, scale, z + i0 * ldz + j0, ldz, tile_rows, cols);
    }
  }
}

// ------------------------------------------------------------------ softmax rows
// exp(x) for x <= 0 (callers pass z - max or log p): x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite
// split of ln2), exp(r) by Cephes' expf polynomial (about 1 ulp), times 2^k by vscalefps. Inputs
// below -104 give 0 (exp(-104) is below the smallest fp32 denormal).
VLARL_TARGET_BF16 inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  return _mm512_scalef_ps(_mm512_add_ps(p, _mm512_set1_ps(1.0f)), kf);
}

VLARL_TARGET_BF16 inline __mmask16 lanes(std::int64_t n, std::int64_t c) {
  const std::int64_t left = n - c;
  return left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// Forward statistics of one row z [n].
VLARL_TARGET_BF16 void forward_row(const float* z, std::int64_t n, std::int64_t label,
                                   float* logp, float* entropy, float* row_max,
                                   float* row_log_sum) {
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::int64_t c = 0; c < n; c += 16) {
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, lanes(n, c), z + c));
  }
  const float m = _mm512_reduce_max_ps(vmax);
  const __m512 vm = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  __m512 sum_ex = _mm512_setzero_ps();
  for (std::int64_t c = 0; c < n; c += 16) {
    const __mmask16 mask = lanes(n, c);
    const __m512 x = _mm512_maskz_sub_ps(mask, _mm512_maskz_loadu_ps(mask, z + c), vm);
    const __m512 e = _mm512_maskz_mov_ps(mask, exp_nonpositive(x));
    sum = _mm512_add_ps(sum, e);
    sum_ex = _mm512_fmadd_ps(e, x, sum_ex);
  }
  const float s = _mm512_reduce_add_ps(sum);
  const float log_s = std::log(s);
  *row_max = m;
  *row_log_sum = log_s;
  *logp = (z[label] - m) - log_s;
  *entropy = log_s - _mm512_reduce_add_ps(sum_ex) / s;  // two non-negative terms
}

// G row = scale * dL/dz from z [n] (overwritten by G).
VLARL_TARGET_BF16 void grad_row(float* z, std::int64_t n, std::int64_t label, float m,
                                float log_s, float g, float e, bool has_entropy_grad,
                                float scale) {
  const __m512 vm = _mm512_set1_ps(m);
  const __m512 vls = _mm512_set1_ps(log_s);
  if (!has_entropy_grad) {  // G = s g (onehot - p)
    const __m512 coef = _mm512_set1_ps(-scale * g);
    for (std::int64_t c = 0; c < n; c += 16) {
      const __mmask16 mask = lanes(n, c);
      const __m512 lp = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, z + c), vm), vls);
      _mm512_mask_storeu_ps(z + c, mask, _mm512_mul_ps(exp_nonpositive(lp), coef));
    }
  } else {  // G = s (g onehot - p (g + e (log p + H))), H = -sum p log p
    __m512 plp = _mm512_setzero_ps();
    for (std::int64_t c = 0; c < n; c += 16) {  // z -> log p, and H
      const __mmask16 mask = lanes(n, c);
      const __m512 lp = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, z + c), vm), vls);
      plp = _mm512_fmadd_ps(_mm512_maskz_mov_ps(mask, exp_nonpositive(lp)), lp, plp);
      _mm512_mask_storeu_ps(z + c, mask, lp);
    }
    const __m512 vh = _mm512_set1_ps(-_mm512_reduce_add_ps(plp));
    const __m512 vg = _mm512_set1_ps(g);
    const __m512 ve = _mm512_set1_ps(e);
    const __m512 vs = _mm512_set1_ps(-scale);
    for (std::int64_t c = 0; c < n; c += 16) {
      const __mmask16 mask = lanes(n, c);
      const __m512 lp = _mm512_maskz_loadu_ps(mask, z + c);
      const __m512 u = _mm512_fmadd_ps(ve, _mm512_add_ps(lp, vh), vg);  // g + e (log p + H)
      _mm512_mask_storeu_ps(z + c, mask,
                            _mm512_mul_ps(_mm512_mul_ps(exp_nonpositive(lp), u), vs));
    }
  }
  z[label] += scale * g;
}

// f32_bf16_gemm: register tile of kMixRows rows of a x kMixVecs vectors of 16 output columns;
// per step of l, kMixVecs bf16 vectors of b are widened to fp32 (exact) and each meets kMixRows
// broadcast a values in kMixRows * kMixVecs FMAs. A task is one column strip (all rows), so its
// b strip [k, 16 * kMixVecs] stays in L1/L2 while the rows go by.
constexpr int kMixRows = 8;
constexpr int kMixVecs = 3;
constexpr std::int64_t kMixCols = 16 * kMixVecs;

VLARL_TARGET_BF16 inline __m512 widen_bf16(__m256i raw) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// Depth (l) is walked in blocks of kMixDepth so that the b rows of a block stay in L1 while all
// row tiles of the strip go by; between blocks a tile's accumulators wait in an fp32 buffer,
// which leaves the summation order (ascending l) and so the result unchanged.
constexpr std::int64_t kMixDepth = 256;

// kMixRows rows x NV vectors of 16 columns (rows < kMixRows at the bottom edge: the missing
// rows repeat the last one and are not stored; MASKED: the last vector has only the columns in
// `last`), over depth l0 .. l1. a points at row 0, b at column 0. The accumulators start from
// zero (l0 == 0) or from `partial` [kMixRows, NV * 16], and end in `partial` or, for the last
// block, rounded to bf16 in out. Constant trip counts, unrolled: the accumulators live in
// registers.
template <int NV, bool MASKED>
VLARL_TARGET_BF16 void mixed_tile(const float* a, std::int64_t a_si, std::int64_t a_sl,
                                  const std::uint16_t* b, std::int64_t ldb, std::int64_t l0,
                                  std::int64_t l1, bool last_block, float* partial,
                                  std::uint16_t* out, std::int64_t ldo, int rows,
                                  __mmask16 last) {
  __m512 acc[kMixRows][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMixRows; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      acc[i][j] = l0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(partial + (i * NV + j) * 16);
    }
  }
  std::int64_t row_offset[kMixRows];
#pragma GCC unroll 8
  for (int i = 0; i < kMixRows; ++i) row_offset[i] = std::min(i, rows - 1) * a_si;
  for (std::int64_t l = l0; l < l1; ++l) {
    const std::uint16_t* bl = b + l * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      bv[j] = widen_bf16(MASKED && j == NV - 1
                             ? _mm256_maskz_loadu_epi16(last, bl + 16 * j)
                             : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bl + 16 * j)));
    }
    const float* al = a + l * a_sl;
#pragma GCC unroll 8
    for (int i = 0; i < kMixRows; ++i) {
      const __m512 av = _mm512_set1_ps(al[row_offset[i]]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (!last_block) {
#pragma GCC unroll 8
    for (int i = 0; i < kMixRows; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) _mm512_storeu_ps(partial + (i * NV + j) * 16, acc[i][j]);
    }
    return;
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMixRows; ++i) {
    if (i >= rows) break;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const __m256i v = (__m256i)_mm512_cvtneps_pbh(acc[i][j]);  // round to nearest even
      std::uint16_t* o = out + i * ldo + 16 * j;
      if (MASKED && j == NV - 1) {
        _mm256_mask_storeu_epi16(o, last, v);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), v);
      }
    }
  }
}

template <int NV, bool MASKED>
VLARL_TARGET_BF16 void mixed_rows(const float* a, std::int64_t a_si, std::int64_t a_sl,
                                  const std::uint16_t* b, std::int64_t ldb, std::uint16_t* out,
                                  std::int64_t ldo, std::int64_t m, std::int64_t k,
                                  __mmask16 last) {
  const std::int64_t tiles = (m + kMixRows - 1) / kMixRows;
  std::vector<float> partial(k > kMixDepth ? tiles * kMixRows * NV * 16 : 0);
  std::int64_t l0 = 0;
  do {  // once when k == 0: the tiles store zeros
    const std::int64_t l1 = std::min(k, l0 + kMixDepth);
    for (std::int64_t tile = 0; tile < tiles; ++tile) {
      const std::int64_t i0 = tile * kMixRows;
      const int rows = static_cast<int>(std::min<std::int64_t>(kMixRows, m - i0));
      mixed_tile<NV, MASKED>(a + i0 * a_si, a_si, a_sl, b, ldb, l0, l1, l1 == k,
                             partial.data() + tile * kMixRows * NV * 16, out + i0 * ldo, ldo,
                             rows, last);
    }
    l0 = l1;
  } while (l0 < k);
}

// Columns c0 .. c0 + kMixCols (fewer at the right edge) of all rows.
VLARL_TARGET_BF16 void mixed_strip(const float* a, std::int64_t a_si, std::int64_t a_sl,
                                   const std::uint16_t* b, std::int64_t ldb, std::uint16_t* out,
                                   std::int64_t ldo, std::int64_t m, std::int64_t n,
                                   std::int64_t k, std::int64_t c0) {
  const std::int64_t cols = std::min(kMixCols, n - c0);
  b += c0;
  out += c0;
  if (cols == kMixCols) {
    mixed_rows<kMixVecs, false>(a, a_si, a_sl, b, ldb, out, ldo, m, k, 0xFFFF);
    return;
  }
  const int nv = static_cast<int>((cols + 15) / 16);
  const __mmask16 last = static_cast<__mmask16>((1u << (cols - 16 * (nv - 1))) - 1);
  if (nv == 3) {
    mixed_rows<3, true>(a, a_si, a_sl, b, ldb, out, ldo, m, k, last);
  } else if (nv == 2) {
    mixed_rows<2, true>(a, a_si, a_sl, b, ldb, out, ldo, m, k, last);
  } else {
    mixed_rows<1, true>(a, a_si, a_sl, b, ldb, out, ldo, m, k, last);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // VLARL_HAVE_AVX512_BF16_KERNEL

void check_common(const char* what, std::int64_t t, std::int64_t n, std::int64_t k,
                  std::int64_t ldh, std::int64_t ldw, int num_threads) {
  if (t < 0 || n < 1 || k < 0 || num_threads < 1) {
    throw std::invalid_argument(std::string(what) + ": need t, k >= 0, n >= 1, num_threads >= 1;"
                                " got t=" + std::to_string(t) + " n=" + std::to_string(n) +
                                " k=" + std::to_string(k) + " num_threads=" +
                                std::to_string(num_threads));
  }
  if ((t > 1 && ldh < k) || (n > 1 && ldw < k)) {
    throw std::invalid_argument(std::string(what) + ": row strides must cover a row");
  }
  if (!bf16_kernels_supported()) {
    throw std::runtime_error(std::string(what) + ": this CPU (or build) has no AVX512-BF16");
  }
}

void check_labels(const char* what, const std::int64_t* labels, std::int64_t t, std::int64_t n) {
  for (std::int64_t i = 0; i < t; ++i) {
    if (labels[i] < 0 || labels[i] >= n) {
      throw std::invalid_argument(std::string(what) + ": label " + std::to_string(labels[i]) +
                                  " at token " + std::to_string(i) + " outside [0, " +
                                  std::to_string(n) + ")");
    }
  }
}

}  // namespace

bool bf16_kernels_supported() {
#ifdef VLARL_HAVE_AVX512_BF16_KERNEL
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 register state (XCR0)
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512bf16");
  return ok;
#else
  return false;
#endif
}

void action_logprob_bf16_forward(const std::uint16_t* h, std::int64_t ldh, const std::uint16_t* w,
                                 std::int64_t ldw, const std::int64_t* labels, std::int64_t t,
                                 std::int64_t n, std::int64_t k, float scale, float* logp,
                                 float* entropy, float* row_max, float* row_log_sum,
                                 int num_threads, float* z_out, std::int64_t ld_out) {
  check_common("action_logprob_bf16_forward", t, n, k, ldh, ldw, num_threads);
  check_labels("action_logprob_bf16_forward", labels, t, n);
  if (z_out && t > 1 && ld_out < n) throw std::invalid_argument("action_logprob_bf16_forward: ld_out < n");
#ifdef VLARL_HAVE_AVX512_BF16_KERNEL
  const std::int64_t ldz = z_out ? ld_out : (n + 15) / 16 * 16;
  run_tasks((t + kTokensPerTask - 1) / kTokensPerTask, t * n * k, num_threads,
            [&](std::int64_t task) {
              const std::int64_t t0 = task * kTokensPerTask;
              const int rows = static_cast<int>(std::min(kTokensPerTask, t - t0));
              std::vector<float> local;
              float* z = z_out ? z_out + t0 * ldz : nullptr;
              if (!z) {
                local.resize(static_cast<std::size_t>(rows * ldz));
                z = local.data();
              }
              logits_block(h, ldh, w, ldw, t0, rows, n, k, scale, z, ldz);
              for (int i = 0; i < rows; ++i) {
                const std::int64_t r = t0 + i;
                forward_row(z + i * ldz, n, labels[r], logp + r, entropy + r, row_max + r,
                            row_log_sum + r);
              }
            });
#endif
}

void action_logprob_bf16_grad_logits(const std::uint16_t* h, std::int64_t ldh,
                                     const std::uint16_t* w, std::int64_t ldw,
                                     const std::int64_t* labels, const float* row_max,
                                     const float* row_log_sum, const float* g_logp,
                                     const float* g_ent, std::int64_t t, std::int64_t n,
                                     std::int64_t k, float scale, float* grad_z, std::int64_t ldg,
                                     int num_threads, const float* z_in, std::int64_t ld_in) {
  check_common("action_logprob_bf16_grad_logits", t, n, k, ldh, ldw, num_threads);
  check_labels("action_logprob_bf16_grad_logits", labels, t, n);
  if (t > 1 && ldg < n) throw std::invalid_argument("action_logprob_bf16_grad_logits: ldg < n");
  if (z_in && t > 1 && ld_in < n) throw std::invalid_argument("action_logprob_bf16_grad_logits: ld_in < n");
#ifdef VLARL_HAVE_AVX512_BF16_KERNEL
  run_tasks((t + kTokensPerTask - 1) / kTokensPerTask, t * n * k, num_threads,
            [&](std::int64_t task) {
              const std::int64_t t0 = task * kTokensPerTask;
              const int rows = static_cast<int>(std::min(kTokensPerTask, t - t0));
              if (z_in) {
                for (int i = 0; i < rows; ++i)
                  std::memcpy(grad_z + (t0 + i) * ldg, z_in + (t0 + i) * ld_in,
                              static_cast<std::size_t>(n) * sizeof(float));
              } else {
                logits_block(h, ldh, w, ldw, t0, rows, n, k, scale, grad_z + t0 * ldg, ldg);
              }
              for (int i = 0; i < rows; ++i) {
                const std::int64_t r = t0 + i;
                grad_row(grad_z + r * ldg, n, labels[r], row_max[r], row_log_sum[r],
                         g_logp ? g_logp[r] : 0.0f, g_ent ? g_ent[r] : 0.0f, g_ent != nullptr,
                         scale);
              }
            });
#endif
}

void f32_bf16_gemm(const float* a, std::int64_t a_si, std::int64_t a_sl, const std::uint16_t* b,
                   std::int64_t ldb, std::uint16_t* out, std::int64_t ldo, std::int64_t m,
                   std::int64_t n, std::int64_t k, int num_threads) {
  if (m < 0 || n < 0 || k < 0 || num_threads < 1) {
    throw std::invalid_argument("f32_bf16_gemm: m, n, k must be >= 0 and num_threads >= 1, got m=" +
                                std::to_string(m) + " n=" + std::to_string(n) + " k=" +
                                std::to_string(k) + " num_threads=" + std::to_string(num_threads));
  }
  if ((k > 1 && ldb < n) || (m > 1 && ldo < n)) {
    throw std::invalid_argument("f32_bf16_gemm: row strides must cover a row (ldb, ldo >= n)");
  }
  if (!bf16_kernels_supported()) {
    throw std::runtime_error("f32_bf16_gemm: this CPU (or build) has no AVX512-BF16 support");
  }
#ifdef VLARL_HAVE_AVX512_BF16_KERNEL
  if (m == 0 || n == 0) return;
  const std::int64_t strips = (n + kMixCols - 1) / kMixCols;
  run_tasks(strips, m * n * k, num_threads, [&](std::int64_t s) {
    mixed_strip(a, a_si, a_sl, b, ldb, out, ldo, m, n, k, s * kMixCols);
  });
#endif
}

}  // namespace vlarl
