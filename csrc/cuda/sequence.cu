// The CUDA backend of the layer driver (driver.h): memory from the stream-ordered allocator,
// GEMMs through cuBLAS and the per-thread functions as kernels, all on the caller's stream.
#include <memory>

#include "cublas.h"
#include "driver.h"
#include "launch.cuh"

namespace fastrnn {
namespace gpu {
namespace {

struct FreeAsync {
  cudaStream_t stream;
  void operator()(void* p) const { cudaFreeAsync(p, stream); }  // no throw from a destructor
};

template <typename U>
struct DeviceBuffer {
  std::unique_ptr<U, FreeAsync> owned;
  U* data() const { return owned.get(); }
};

struct CudaBackend {
  cudaStream_t stream;
  cublasHandle_t blas;

  template <typename U>
  DeviceBuffer<U> alloc(long n) {
    void* p = nullptr;
    if (n > 0) check(cudaMallocAsync(&p, n * sizeof(U), stream), "cudaMallocAsync");
    return DeviceBuffer<U>{std::unique_ptr<U, FreeAsync>(static_cast<U*>(p), FreeAsync{stream})};
  }
  template <typename F>
  void each(long n, const F& f) {
    gpu::each(stream, n, f);
  }
  template <typename T, typename C>
  void gemm(bool ta, bool tb, long m, long n, long k, const T* a, long lda, const T* b, long ldb,
            bool accumulate, C* c, long ldc) {
    gpu::gemm(blas, ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
  }
};

CudaBackend backend_on(cudaStream_t stream) {
  cublasHandle_t h = blas_handle();
  check(cublasSetStream(h, stream), "cublasSetStream");
  // No workspace: the handle's default one would be shared by GEMMs in flight on other streams.
  check(cublasSetWorkspace(h, nullptr, 0), "cublasSetWorkspace");
  return CudaBackend{stream, h};
}

}  // namespace

template <typename T, typename A>
void layer_forward(const LayerForward<T, A>& args, CUstream_st* stream) {
  CudaBackend be = backend_on(stream);
  run_forward(be, args);
}

template <typename T, typename A>
void layer_backward(const LayerBackward<T, A>& args, CUstream_st* stream) {
  CudaBackend be = backend_on(stream);
  run_backward(be, args);
}

#define FASTRNN_INSTANTIATE(T, A)                                             \
  template void layer_forward<T, A>(const LayerForward<T, A>&, CUstream_st*); \
  template void layer_backward<T, A>(const LayerBackward<T, A>&, CUstream_st*);
FASTRNN_INSTANTIATE(float, float)
FASTRNN_INSTANTIATE(double, double)
FASTRNN_INSTANTIATE(__half, float)
FASTRNN_INSTANTIATE(__nv_bfloat16, float)
#undef FASTRNN_INSTANTIATE

}  // namespace gpu
}  // namespace fastrnn
