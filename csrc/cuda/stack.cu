// The stack driver (stack_driver.h) on the CUDA backend: its gathers and scatters as kernels, each
// layer through layer_forward/layer_backward (sequence.cu), all on the caller's stream.
#include <stdexcept>

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

template <typename T, typename A>
using DeviceStack = DeviceState<StackHandle, StackState<StackBackend, T, A>>;

}  // namespace

template <typename T, typename A>
std::shared_ptr<StackHandle> stack_forward(const StackForward<T>& args, CUstream_st* stream) {
  auto slot = std::make_shared<cudaStream_t>(stream);
  StackBackend be(slot);
  auto state = run_stack_forward<StackBackend, T, A>(be, args);
  if (!state) return nullptr;
  auto handle = std::make_shared<DeviceStack<T, A>>();
  check(cudaGetDevice(&handle->device), "cudaGetDevice");
  handle->stream = slot;
  handle->state = std::move(state);
  return handle;
}

template <typename T, typename A>
void stack_backward(StackHandle& state, const StackBackward<T, A>& args, CUstream_st* stream) {
  auto* stack = dynamic_cast<DeviceStack<T, A>*>(&state);
  if (!stack) throw std::invalid_argument("stack_backward: the state of a forward of another dtype");
  *stack->stream = stream;  // the buffers of the state now free on this stream
  StackBackend be(stack->stream);
  run_stack_backward(be, *stack->state, args);
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
