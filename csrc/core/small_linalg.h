// Dense row-major linear algebra on small matrices (the OSC controller's 3x3 to 7x7 blocks).
// Plain loops in a fixed order: results are deterministic and independent of threads.
#pragma once

namespace vlarl {

// C[m, n] = A[m, k] @ B[k, n]
void matmul(const double* A, const double* B, int m, int k, int n, double* C);
// C[m, n] = A[m, k] @ B[n, k]^T
void matmul_bt(const double* A, const double* B, int m, int k, int n, double* C);
// y[m] = A[m, n] @ x[n]
void matvec(const double* A, const double* x, int m, int n, double* y);
// y[n] = A[m, n]^T @ x[m]
void matvec_t(const double* A, const double* x, int m, int n, double* y);
// out = A^-1 (A is n x n) by Gauss-Jordan elimination with partial pivoting. work: 2 * n * n
// doubles. Returns false (out undefined) when a pivot is exactly zero.
bool invert(const double* A, int n, double* out, double* work);

}  // namespace vlarl
