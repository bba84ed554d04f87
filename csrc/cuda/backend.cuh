// The CUDA backend of the drivers (driver.h, stack_driver.h): memory from the stream-ordered
// allocator, GEMMs through cuBLAS, the per-thread functions as kernels, host-to-device copies, all
// on one stream. The stream sits in a shared slot that the buffers' deleters read when they free:
// a stack's state lives from its forward to its backward, which may run on another stream, and
// frees on the stream that used it last.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "cublas.h"
#include "launch.cuh"

namespace fastrnn {
namespace gpu {

using StreamSlot = std::shared_ptr<cudaStream_t>;

struct FreeAsync {
  StreamSlot stream;
  void operator()(void* p) const { cudaFreeAsync(p, *stream); }  // no throw from a destructor
};

template <typename U>
struct DeviceBuffer {
  std::unique_ptr<U, FreeAsync> owned;
  U* data() const { return owned.get(); }
};

// A training forward's state kept for backward behind a handle (Handle: the public base of
// stack.h or tree.h). Its buffers free on the stream that used them last, on their own device.
template <typename Handle, typename State>
struct DeviceState : Handle {
  int device = 0;
  StreamSlot stream;
  std::unique_ptr<State> state;
  ~DeviceState() override {  // the per-thread stream is per device
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess) return;
    cudaSetDevice(device);
    state.reset();
    cudaSetDevice(previous);
  }
};

struct CudaBackend {
  StreamSlot stream;
  cublasHandle_t blas;

  // This thread's cuBLAS handle, on *slot.
  explicit CudaBackend(StreamSlot slot) : stream(std::move(slot)), blas(blas_handle()) {
    check(cublasSetStream(blas, *stream), "cublasSetStream");
    // No workspace: the handle's default one would be shared by GEMMs in flight on other streams.
    check(cublasSetWorkspace(blas, nullptr, 0), "cublasSetWorkspace");
  }

  template <typename U>
  DeviceBuffer<U> alloc(long n) {
    void* p = nullptr;
    if (n > 0) check(cudaMallocAsync(&p, n * sizeof(U), *stream), "cudaMallocAsync");
    return DeviceBuffer<U>{std::unique_ptr<U, FreeAsync>(static_cast<U*>(p), FreeAsync{stream})};
  }
  // From pageable host memory: the call returns once `src` has been read.
  template <typename U>
  void upload(U* dst, const U* src, long n) {
    if (n > 0)
      check(cudaMemcpyAsync(dst, src, n * sizeof(U), cudaMemcpyHostToDevice, *stream),
            "cudaMemcpyAsync");
  }
  template <typename F>
  void each(long n, const F& f) {
    gpu::each(*stream, n, f);
  }
  template <typename T, typename C>
  void gemm(bool ta, bool tb, long m, long n, long k, const T* a, long lda, const T* b, long ldb,
            bool accumulate, C* c, long ldc) {
    gpu::gemm(blas, ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
  }
};

// A training forward run with a Backend on `stream` (run(backend): the driver's state, or null when
// it keeps none), its state kept behind a Handle for backward.
template <typename Handle, typename Backend, typename State, typename Run>
std::shared_ptr<Handle> keep_forward(CUstream_st* stream, Run&& run) {
  auto slot = std::make_shared<cudaStream_t>(stream);
  Backend be(slot);
  std::unique_ptr<State> state = run(be);
  if (!state) return nullptr;
  auto handle = std::make_shared<DeviceState<Handle, State>>();
  check(cudaGetDevice(&handle->device), "cudaGetDevice");
  handle->stream = slot;
  handle->state = std::move(state);
  return handle;
}

// run(backend, state) for backward on `stream` with the state `handle` kept; an error naming
// `what` when the handle holds the state of a forward of another dtype.
template <typename Handle, typename Backend, typename State, typename Run>
void resume_backward(Handle& handle, CUstream_st* stream, const char* what, Run&& run) {
  auto* kept = dynamic_cast<DeviceState<Handle, State>*>(&handle);
  if (!kept) throw std::invalid_argument(std::string(what) + ": the state of a forward of another dtype");
  *kept->stream = stream;  // the buffers of the state now free on this stream
  Backend be(kept->stream);
  run(be, *kept->state);
}

}  // namespace gpu
}  // namespace fastrnn
