// A whole network on a CUDA device, as csrc/cpu/stack.h on the CPU: every layer and both
// directions in one call, padded time-major input with per-sequence lengths, dropout between
// layers, the same packing and (for one seed) the same dropout masks. Pointers are device memory
// except lengths (host); T stored, A arithmetic as in layer.h.
#pragma once

#include <memory>

#include "../cpu/stack.h"  // StackForward, DirectionWeights, DirectionGrads
#include "layer.h"

namespace fastrnn {
namespace gpu {

template <typename T, typename A>
struct StackBackward {
  const T* dy;                     // (steps, batch, D*S); null: zeros
  const T *dh_n, *dc_n;            // as h_n, c_n; null: zeros
  T* dx;                           // (steps, batch, input), zeros past each length
  T *dh0, *dc0;                    // as h0, c0; dc0 LSTM only
  const DirectionGrads<A>* grads;  // (layers*directions,), shaped as the weights, in A
};

// What a training forward keeps for backward, in device memory; freed on the stream that used it
// last. Opaque here (stack.cu).
struct StackHandle {
  virtual ~StackHandle() = default;
};

// Runs on `stream` of the current device and returns without waiting; the state for
// stack_backward in training mode, else null. The caller's x and weights must outlive the state.
// stack_backward needs a state of the same (T, A). Errors throw CudaError.
template <typename T, typename A>
std::shared_ptr<StackHandle> stack_forward(const StackForward<T>& args, CUstream_st* stream);
template <typename T, typename A>
void stack_backward(StackHandle& state, const StackBackward<T, A>& args, CUstream_st* stream);

}  // namespace gpu
}  // namespace fastrnn
