#include "small_linalg.h"

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

bool invert(const double* A, int n, double* out, double* work) {
  double* a = work;  // working copy of A
  for (int i = 0; i < n * n; ++i) a[i] = A[i];
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
    if (best == 0.0) return false;
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

}  // namespace vlarl
