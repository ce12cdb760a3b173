#include "small_linalg.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace vlarl {

void matmul(const double* A, const double* B, int m, int k, int n, double* C) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int p = 0; p < k; ++p) sum += A[i * k + p] * B[p * n + j];
      C[i * n + j] = sum;
    }
  }
}

void matmul_bt(const double* A, const double* B, int m, int k, int n, double* C) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int p = 0; p < k; ++p) sum += A[i * k + p] * B[j * k + p];
      C[i * n + j] = sum;
    }
  }
}

void matvec(const double* A, const double* x, int m, int n, double* y) {
  for (int i = 0; i < m; ++i) {
    double sum = 0.0;
    for (int j = 0; j < n; ++j) sum += A[i * n + j] * x[j];
    y[i] = sum;
  }
}

void matvec_t(const double* A, const double* x, int m, int n, double* y) {
  for (int j = 0; j < n; ++j) {
    double sum = 0.0;
    for (int i = 0; i < m; ++i) sum += A[i * n + j] * x[i];
    y[j] = sum;
  }
}

bool invert(const double* A, int n, double* out, double* work, double rel_pivot_tol) {
  double* a = work;  // working copy of A
  for (int i = 0; i < n * n; ++i) a[i] = A[i];
  double scale = 0.0;
  for (int i = 0; i < n; ++i) scale = std::max(scale, std::fabs(A[i * n + i]));
  const double min_pivot = rel_pivot_tol * scale;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) out[i * n + j] = (i == j) ? 1.0 : 0.0;
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    double best = std::fabs(a[c * n + c]);
    for (int r = c + 1; r < n; ++r) {
      const double v = std::fabs(a[r * n + c]);
      if (v > best) {
        best = v;
        pivot = r;
      }
    }
    if (best == 0.0 || best <= min_pivot) return false;
    if (pivot != c) {
      for (int j = 0; j < n; ++j) {
        std::swap(a[c * n + j], a[pivot * n + j]);
        std::swap(out[c * n + j], out[pivot * n + j]);
      }
    }
    const double inv = 1.0 / a[c * n + c];
    for (int j = 0; j < n; ++j) {
      a[c * n + j] *= inv;
      out[c * n + j] *= inv;
    }
    for (int r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[r * n + c];
      if (f == 0.0) continue;
      for (int j = 0; j < n; ++j) {
        a[r * n + j] -= f * a[c * n + j];
        out[r * n + j] -= f * out[c * n + j];
      }
    }
  }
  return true;
}

void pinv_symmetric(const double* A, int n, double* out, double* work) {
  double* a = work;          // [n, n], diagonalised in place
  double* V = work + n * n;  // [n, n], eigenvectors in columns
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      a[i * n + j] = 0.5 * (A[i * n + j] + A[j * n + i]);
      V[i * n + j] = (i == j) ? 1.0 : 0.0;
    }
  }
  for (int sweep = 0; sweep < 64; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (int i = 0; i < n; ++i) {
      diag += a[i * n + i] * a[i * n + i];
      for (int j = i + 1; j < n; ++j) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-32 * diag || off == 0.0) break;
    for (int p = 0; p < n; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p, q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // rows p, q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < n; ++k) {
          const double vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  double largest = 0.0;
  for (int i = 0; i < n; ++i) largest = std::max(largest, std::fabs(a[i * n + i]));
  const double cutoff = 1e-15 * largest;
  for (int i = 0; i < n * n; ++i) out[i] = 0.0;
  for (int k = 0; k < n; ++k) {
    const double ev = a[k * n + k];
    if (!(std::fabs(ev) > cutoff)) continue;
    const double inv = 1.0 / ev;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) out[i * n + j] += V[i * n + k] * inv * V[j * n + k];
  }
}

}  // namespace vlarl
