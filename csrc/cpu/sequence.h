// One recurrent layer in one direction, on the CPU: the time loop around the cells of
// csrc/cells. Sequences are packed as in torch's PackedSequence: batch rows sorted by length
// (longest first), step t holds rows offsets[t] .. offsets[t] + batch_sizes[t] of x, y and the
// saved buffer, and those are the first batch_sizes[t] rows of the batch. With no lengths the
// packing is the plain (T, B, .) layout.
#pragma once

namespace fastrnn {

enum class CellKind { rnn_tanh, rnn_relu, lstm, gru };

// Gate blocks G per cell: 1, 4, 3. (Inline, for the CUDA module too.)
constexpr int gate_count(CellKind cell) {
  return cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1;
}
// Columns per row of the training buffer `saved`: LSTM 5H (activated i f g o, then c; 6H with a
// projection: then o*tanh(c)), GRU 4H (activated r z n, then hn = W_hn h_prev + b_hn), RNN 0
// (backward needs only y).
constexpr long saved_columns(CellKind cell, long hidden, long proj = 0) {
  if (cell == CellKind::lstm) return (proj > 0 ? 6 : 5) * hidden;
  return cell == CellKind::gru ? 4 * hidden : 0;
}

template <typename T>
struct LayerForward {
  CellKind cell;
  long steps, batch, input, hidden;
  long proj;                // LSTM only: h = W_hr (o * tanh(c)) of size proj (torch's proj_size);
                            // 0: none. S below is proj if set, else hidden.
  const long* batch_sizes;  // (steps,) nonincreasing, <= batch; null: `batch` rows every step
  const T* x;               // (rows, input)
  const T* h0;              // (batch, S); null: zeros
  const T* c0;              // (batch, hidden), LSTM; null: zeros
  const T *w_ih, *w_hh;     // (G*hidden, input), (G*hidden, S)
  const T* w_hr;            // (proj, hidden) when proj > 0
  const T *b_ih, *b_hh;     // (G*hidden,) each; null: no bias
  T* y;                     // (rows, S)
  T *h_n, *c_n;             // (batch, S), (batch, hidden); c_n LSTM only. Rows past a
                            // sequence's end keep the state of its last step.
  T* saved;                 // (rows, saved_columns) in training mode; null: inference

  long state() const { return proj > 0 ? proj : hidden; }  // S
};

template <typename T>
struct LayerBackward {
  const LayerForward<T>* fwd;  // the training-mode forward, outputs filled in
  const T* dy;                 // (rows, S); null: zeros
  const T *dh_n, *dc_n;        // (batch, S), (batch, hidden); null: zeros
  T* dx;                       // (rows, input)
  T *dh0, *dc0;                // (batch, S), (batch, hidden); dc0 LSTM only
  T *dw_ih, *dw_hh;            // written, not accumulated
  T* dw_hr;                    // (proj, hidden) with a projection
  T *db_ih, *db_hh;            // null: no bias
};

// Entry points: dispatch to the best instruction set (see dispatch.cpp).
template <typename T>
void layer_forward(const LayerForward<T>& args);
template <typename T>
void layer_backward(const LayerBackward<T>& args);

}  // namespace fastrnn
