// The stack driver (stack_driver.h) on the CUDA backend: its gathers and scatters as kernels, each
// layer through layer_forward/layer_backward (sequence.cu), all on the caller's stream.
#include "backend.cuh"
#include "stack_driver.h"

namespace fastrnn {
namespace gpu {
namespace {

struct StackBackend : CudaBackend {
  using CudaBackend::CudaBackend;
  template <typename T, typename A>
  void layer_forward(const LayerForward<T, A>& f) {
    gpu::layer_forward(f, *stream);
  }
  template <typename T, typename A>
  void layer_backward(const LayerBackward<T, A>& g) {
    gpu::layer_backward(g, *stream);
  }
};

}  // namespace

template <typename T, typename A>
std::shared_ptr<StackHandle> stack_forward(const StackForward<T>& args, CUstream_st* stream) {
  return keep_forward<StackHandle, StackBackend, StackState<StackBackend, T, A>>(
      stream, [&](StackBackend& be) { return run_stack_forward<StackBackend, T, A>(be, args); });
}

template <typename T, typename A>
void stack_backward(StackHandle& state, const StackBackward<T, A>& args, CUstream_st* stream) {
  resume_backward<StackHandle, StackBackend, StackState<StackBackend, T, A>>(
      state, stream, "stack_backward", [&](StackBackend& be, auto& kept) { run_stack_backward(be, kept, args); });
}

#define FASTRNN_INSTANTIATE(T, A)                                                              \
  template std::shared_ptr<StackHandle> stack_forward<T, A>(const StackForward<T>&, CUstream_st*); \
  template void stack_backward<T, A>(StackHandle&, const StackBackward<T, A>&, CUstream_st*);
FASTRNN_INSTANTIATE(float, float)
FASTRNN_INSTANTIATE(double, double)
FASTRNN_INSTANTIATE(__half, float)
FASTRNN_INSTANTIATE(__nv_bfloat16, float)
#undef FASTRNN_INSTANTIATE

}  // namespace gpu
}  // namespace fastrnn
