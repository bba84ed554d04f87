// A whole recurrent network on the CPU, as torch.nn.RNN/LSTM/GRU: every layer and both
// directions in one call, over padded time-major input with per-sequence lengths. The driver
// packs the batch (rows sorted by length, longest first), runs sequence.h's layer driver for each
// layer and direction (the reverse direction over each sequence reversed up to its own length),
// joins the two directions' outputs as the next layer's input (with dropout between layers when
// training), and unpacks the output and final states into the caller's batch order. Backward runs
// the same in reverse. Not compiled per instruction set: layer_forward/backward dispatch.
#pragma once

#include <cstdint>
#include <memory>

#include "sequence.h"

namespace fastrnn {

// One layer in one direction, torch's weight_ih_l{k}[_reverse] etc. S = P with a projection,
// else H.
template <typename T>
struct DirectionWeights {
  const T *w_ih, *w_hh;  // (G*H, layer input), (G*H, S); layer input: I, then D*S
  const T *b_ih, *b_hh;  // (G*H,) each; null: no bias
  const T* w_hr;         // (P, H) with a projection, else null
};

// Their gradients, shaped as the weights; written, not accumulated.
template <typename T>
struct DirectionGrads {
  T *dw_ih, *dw_hh, *db_ih, *db_hh, *dw_hr;
};

template <typename T>
struct StackForward {
  CellKind cell;
  long steps, batch, input, hidden;
  long proj;                           // P (LSTM only); 0: no projection
  long layers, directions;             // directions: 1 or 2
  const long* lengths;                 // (batch,) each in [1, steps], any order; null: all steps
  const T* x;                          // (steps, batch, input), time-major, padded
  const T *h0, *c0;                    // (layers*directions, batch, S), (.., batch, H); null: 0
  const DirectionWeights<T>* weights;  // (layers*directions,): layer l direction d at l*D + d
  double dropout;                      // on each layer's output but the last's, when training
  std::uint64_t seed;                  // of the dropout masks
  bool training;                       // keep what backward needs
  T* y;                                // (steps, batch, D*S), zeros past each length
  T *h_n, *c_n;                        // as h0, c0; c_n LSTM only
};

template <typename T>
struct StackBackward {
  const T* dy;                     // (steps, batch, D*S); null: zeros
  const T *dh_n, *dc_n;            // as h_n, c_n; null: zeros
  T* dx;                           // (steps, batch, input), zeros past each length
  T *dh0, *dc0;                    // as h0, c0; dc0 LSTM only
  const DirectionGrads<T>* grads;  // (layers*directions,)
};

// What backward needs (defined in stack.cpp): the packing, each layer's input, each direction's
// outputs and saved buffers, the dropout masks.
template <typename T>
struct StackState;

// Runs the network; returns the state for stack_backward in training mode, else null. The
// caller's x and weights must outlive the state, which points into them.
template <typename T>
std::shared_ptr<StackState<T>> stack_forward(const StackForward<T>& args);
template <typename T>
void stack_backward(const StackState<T>& state, const StackBackward<T>& args);

}  // namespace fastrnn
