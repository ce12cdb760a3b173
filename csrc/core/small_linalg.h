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
// doubles. Returns false (out undefined) when a pivot's magnitude is at or below
// rel_pivot_tol x the largest |A_ii| (0: only an exactly zero pivot fails).
bool invert(const double* A, int n, double* out, double* work, double rel_pivot_tol = 0.0);
// out = pinv(A) for a symmetric A (n <= 16) as numpy's pinv defines it (singular values at or
// below 1e-15 x the largest are dropped), from a cyclic Jacobi eigen-decomposition. work:
// 2 * n * n doubles. The controller's fallback when a matrix is exactly singular.
void pinv_symmetric(const double* A, int n, double* out, double* work);

}  // namespace vlarl
