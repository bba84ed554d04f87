#include "blas.h"

#include <climits>

#if defined(FASTRNN_BLAS_SCIPY_OPENBLAS)
#include <cblas.h>
#define FASTRNN_CBLAS(name) scipy_cblas_##name
#else
#include <cblas.h>
#define FASTRNN_CBLAS(name) cblas_##name
#endif

namespace fastrnn {
namespace {

// C = beta * C, for the inner size k = 0 (no product), which CBLAS implementations treat unevenly.
template <typename T>
void scale(long m, long n, T beta, T* c, long ldc) {
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

void check_gemm_args(bool trans_a, bool trans_b, long m, long n, long k, long lda, long ldb,
                     long ldc) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("gemm: " + what); };
  if (m < 0 || n < 0 || k < 0) fail("negative size");
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
    fail("size exceeds the 32-bit BLAS interface");
  const long a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (lda < (a_cols > 1 ? a_cols : 1)) fail("lda " + std::to_string(lda) + " too small");
  if (ldb < (b_cols > 1 ? b_cols : 1)) fail("ldb " + std::to_string(ldb) + " too small");
  if (ldc < (n > 1 ? n : 1)) fail("ldc " + std::to_string(ldc) + " too small");
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, long m, long n, long k, float alpha, const float* a,
                 long lda, const float* b, long ldb, float beta, float* c, long ldc) {
  check_gemm_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
  FASTRNN_CBLAS(sgemm)(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                       trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
                       int(lda), b, int(ldb), beta, c, int(ldc));
}

template <>
void gemm<double>(bool trans_a, bool trans_b, long m, long n, long k, double alpha,
                  const double* a, long lda, const double* b, long ldb, double beta, double* c,
                  long ldc) {
  check_gemm_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
  FASTRNN_CBLAS(dgemm)(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                       trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
                       int(lda), b, int(ldb), beta, c, int(ldc));
}

#if defined(FASTRNN_BLAS_SCIPY_OPENBLAS)
void blas_set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
// Another user of the same library in this process (a GEMM benchmark, say) may have given it
// threads of its own; inside fastrnn's regions they would compete with fastrnn's threads.
void blas_single_threaded() {
  if (scipy_openblas_get_num_threads() != 1) scipy_openblas_set_num_threads(1);
}
std::string blas_info() {
  return std::string("scipy-openblas32: ") + scipy_openblas_get_config() + " core " +
         scipy_openblas_get_corename();
}
#else
void blas_set_num_threads(int) {}
void blas_single_threaded() {}
std::string blas_info() { return "CBLAS (FASTRNN_BLAS=cblas)"; }
#endif

}  // namespace fastrnn
