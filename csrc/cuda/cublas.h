// The cuBLAS status check (a CudaError naming the call) and the one GEMM of the CUDA code:
// row-major C = op(A) op(B) (+ C) through cublasGemmEx, sums in float (double for double), C of
// the stored type or of the arithmetic type.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <type_traits>
#include <unordered_map>

#include "check.h"

namespace fastrnn {
namespace gpu {

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string(what) + " failed: " + cublasGetStatusName(status) + " (" +
                    cublasGetStatusString(status) + ")");
}

template <typename T> constexpr cudaDataType_t cuda_type();
template <> constexpr cudaDataType_t cuda_type<float>() { return CUDA_R_32F; }
template <> constexpr cudaDataType_t cuda_type<double>() { return CUDA_R_64F; }
template <> constexpr cudaDataType_t cuda_type<__half>() { return CUDA_R_16F; }
template <> constexpr cudaDataType_t cuda_type<__nv_bfloat16>() { return CUDA_R_16BF; }

// One handle per device and host thread, kept for the thread's life (destroying handles at exit
// can run after the CUDA context is gone).
inline cublasHandle_t blas_handle() {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasHandle_t h = nullptr;
    check(cublasCreate(&h), "cublasCreate");
    it = handles.emplace(device, h).first;
  }
  return it->second;
}

// m x n result, k the inner size; trans_a: A is stored (k, m), else (m, k); trans_b likewise.
// Row-major C is column-major C^T = op(B)^T op(A)^T, hence B before A.
template <typename T, typename C>
void gemm(cublasHandle_t h, bool trans_a, bool trans_b, long m, long n, long k, const T* a,
          long lda, const T* b, long ldb, bool accumulate, C* c, long ldc) {
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if constexpr (std::is_same_v<C, double>) {
    const double one = 1, beta = accumulate ? 1 : 0;
    check(cublasGemmEx_64(h, op_b, op_a, n, m, k, &one, b, cuda_type<T>(), ldb, a, cuda_type<T>(),
                          lda, &beta, c, cuda_type<C>(), ldc, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  } else {
    const float one = 1, beta = accumulate ? 1 : 0;
    check(cublasGemmEx_64(h, op_b, op_a, n, m, k, &one, b, cuda_type<T>(), ldb, a, cuda_type<T>(),
                          lda, &beta, c, cuda_type<C>(), ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  }
}

}  // namespace gpu
}  // namespace fastrnn
