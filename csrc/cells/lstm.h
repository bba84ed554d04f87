// LSTM cell, one hidden unit, PyTorch's gate order i, f, g, o:
//   i = σ(pre_i)  f = σ(pre_f)  g = tanh(pre_g)  o = σ(pre_o)
//   c = f*c_prev + i*g          h = o*tanh(c)
// The Tree-LSTM (tree_lstm.h) builds on these same functions.
#pragma once

#include "common.h"

namespace fastrnn {

template <typename V>
struct LstmGates {
  V i, f, g, o;
};

// In: pre-activations in `gates`. Out: activations in `gates`, the new c and h.
template <typename V>
FASTRNN_HD void lstm_activate(LstmGates<V>& gates) {
  gates.i = fr_sigmoid(gates.i);
  gates.f = fr_sigmoid(gates.f);
  gates.g = fr_tanh(gates.g);
  gates.o = fr_sigmoid(gates.o);
}

template <typename V>
FASTRNN_HD void lstm_forward_unit(LstmGates<V>& gates, V c_prev, V& c, V& h) {
  lstm_activate(gates);
  c = gates.f * c_prev + gates.i * gates.g;
  h = gates.o * fr_tanh(c);
}

// Gradients through h = o*tanh(c) and c = (input part) + forget term, up to dc (total d c).
// In: activations, c, dh (total d h), dc (d c arriving from the later step / parent).
// Out: dc_total = dc + dh*o*(1 - tanh(c)^2), and d pre for i, g, o. The forget gate is left to the
// caller, which knows its c_prev (the LSTM: one; the Tree-LSTM: one per child).
template <typename V>
FASTRNN_HD V lstm_backward_igo(const LstmGates<V>& act, V c, V dh, V dc, LstmGates<V>& dpre) {
  const V one(1);
  const V tc = fr_tanh(c);
  const V dc_total = dc + dh * act.o * (one - tc * tc);
  dpre.o = dh * tc * act.o * (one - act.o);
  dpre.i = dc_total * act.g * act.i * (one - act.i);
  dpre.g = dc_total * act.i * (one - act.g * act.g);
  return dc_total;
}

// d pre_f for a forget gate f that multiplies c_prev, given the total dc of the cell.
template <typename V>
FASTRNN_HD V lstm_backward_forget(V f, V c_prev, V dc_total) {
  return dc_total * c_prev * f * (V(1) - f);
}

// Whole LSTM unit backward. `dc` in: d c from the later step; out: d c_prev.
template <typename V>
FASTRNN_HD void lstm_backward_unit(const LstmGates<V>& act, V c, V c_prev, V dh, V& dc,
                                   LstmGates<V>& dpre) {
  const V dc_total = lstm_backward_igo(act, c, dh, dc, dpre);
  dpre.f = lstm_backward_forget(act.f, c_prev, dc_total);
  dc = dc_total * act.f;
}

}  // namespace fastrnn
