// The one GEMM of the CPU code: row-major C = alpha * op(A) op(B) + beta * C over a CBLAS.
// The build picks the CBLAS: scipy-openblas32 (symbols prefixed scipy_) by default, or any other
// (MKL, a system OpenBLAS) with FASTRNN_BLAS=cblas. Shapes are checked before the call, since a
// CBLAS reports a bad argument only by printing from xerbla.
#pragma once

#include <stdexcept>
#include <string>

namespace fastrnn {

// m x n result, k the inner size; trans_a: A is stored (k, m), else (m, k); trans_b likewise.
template <typename T>
void gemm(bool trans_a, bool trans_b, long m, long n, long k, T alpha, const T* a, long lda,
          const T* b, long ldb, T beta, T* c, long ldc);

// Threads the BLAS may use (the kernels' own loops take theirs from threads.h).
void blas_set_num_threads(int n);
// Keep the BLAS to the calling thread: fastrnn splits its GEMMs among its own threads. Called
// before every parallel region and every GEMM outside one.
void blas_single_threaded();
// Name and configuration of the BLAS, e.g. "OpenBLAS 0.3.x DYNAMIC_ARCH ... Haswell".
std::string blas_info();

}  // namespace fastrnn
