// One recurrent layer in one direction on a CUDA device: the arguments of the time loop in
// driver.h. The packed layout is csrc/cpu/sequence.h's (batch rows sorted by length, step t holds
// the first batch_sizes[t] rows of the batch); `reverse` runs each sequence from its own last step
// back to its first. Every pointer is device memory except batch_sizes, which stays on the host.
//
// T is the stored type (float, double, __half, __nv_bfloat16), A the type of the arithmetic and of
// the buffers that carry it across steps (double for double, else float): the saved gates, the
// weight and bias gradients.
#pragma once

#include <stdexcept>

#include "../cpu/sequence.h"  // CellKind

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace fastrnn {
namespace gpu {

// A failed CUDA or cuBLAS call; the message names the call and the status.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T, typename A>
struct LayerForward {
  CellKind cell;
  long steps, batch, input, hidden;
  long proj;                // LSTM only: h = W_hr (o * tanh(c)) of size proj; 0: none. S below
                            // is proj if set, else hidden.
  const long* batch_sizes;  // host, (steps,) nonincreasing, <= batch; null: `batch` rows every step
  bool reverse;             // run every sequence from its last step to its first
  const T* x;               // (rows, input)
  const T *h0, *c0;         // (batch, S), (batch, hidden); null: zeros; c0 LSTM only
  const T *w_ih, *w_hh;     // (G*hidden, input), (G*hidden, S)
  const T* w_hr;            // (proj, hidden) when proj > 0
  const T *b_ih, *b_hh;     // (G*hidden,) each; null: no bias
  T* y;                     // (rows, S)
  T *h_n, *c_n;             // (batch, S), (batch, hidden); c_n LSTM only
  A* saved;                 // (rows, saved_columns) in training mode; null: inference

  long state() const { return proj > 0 ? proj : hidden; }  // S
};

template <typename T, typename A>
struct LayerBackward {
  const LayerForward<T, A>* fwd;  // the training-mode forward, outputs filled in
  const T* dy;                    // (rows, S); null: zeros
  const T *dh_n, *dc_n;           // (batch, S), (batch, hidden); null: zeros
  T* dx;                          // (rows, input)
  T *dh0, *dc0;                   // (batch, S), (batch, hidden); dc0 LSTM only
  A *dw_ih, *dw_hh;               // written, not accumulated
  A *db_ih, *db_hh;               // null: no bias
  A* dw_hr;                       // (proj, hidden) with a projection
};

// Entry points (sequence.cu), for (T, A) = (float, float), (double, double), (__half, float),
// (__nv_bfloat16, float). They run on `stream` of the current device and return without waiting;
// a CUDA or cuBLAS error throws fastrnn::gpu::CudaError.
template <typename T, typename A>
void layer_forward(const LayerForward<T, A>& args, CUstream_st* stream);
template <typename T, typename A>
void layer_backward(const LayerBackward<T, A>& args, CUstream_st* stream);

}  // namespace gpu
}  // namespace fastrnn
