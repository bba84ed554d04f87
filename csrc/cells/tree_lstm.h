// Tree-LSTM node, one hidden unit (Tai, Socher & Manning 2015), built on the LSTM cell of lstm.h:
//   i = σ(pre_i)  u = tanh(pre_u)  o = σ(pre_o)  f_k = σ(pre_f_k) for each child k
//   c = i*u + sum_k f_k*c_k      h = o*tanh(c)
// Child-Sum and N-ary differ only in how the pre-activations are formed (the drivers' GEMMs);
// the pointwise math here is the same for both. u sits in the LSTM's g slot. The children are
// reached through small accessors, so the CPU driver (per SIMD vector of units) and a CUDA kernel
// (per thread) call the same function.
#pragma once

#include "lstm.h"

namespace fastrnn {

// In: gates.i, gates.g (= u), gates.o pre-activations; children: how many; f_pre(k), c_child(k):
// child k's forget pre-activation and c. Out: gates activated (gates.f is the first child's
// forget gate, unused for a leaf), c, h; f_out(k, f_k) receives each activated forget gate.
template <typename V, typename FPre, typename CChild, typename FOut>
FASTRNN_HD void tree_lstm_forward_unit(LstmGates<V>& gates, long children, FPre&& f_pre,
                                       CChild&& c_child, FOut&& f_out, V& c, V& h) {
  gates.f = children > 0 ? f_pre(0) : V(0);
  lstm_activate(gates);
  c = gates.i * gates.g;
  for (long k = 0; k < children; ++k) {
    const V f = k == 0 ? gates.f : fr_sigmoid(f_pre(k));
    f_out(k, f);
    c = c + f * c_child(k);
  }
  h = gates.o * fr_tanh(c);
}

// In: act (i, u in g, o activated), c, dh (total d h), dc (d c from outside: the caller's dc);
// f(k), c_child(k): child k's forget gate and c. Out: dpre.i, dpre.g, dpre.o; child_out(k,
// d pre_f_k, d c_k) receives each child's forget-gate gradient and its cell-state gradient.
template <typename V, typename FAct, typename CChild, typename ChildOut>
FASTRNN_HD void tree_lstm_backward_unit(const LstmGates<V>& act, V c, V dh, V dc, long children,
                                        FAct&& f, CChild&& c_child, ChildOut&& child_out,
                                        LstmGates<V>& dpre) {
  const V dc_total = lstm_backward_igo(act, c, dh, dc, dpre);
#ifdef __CUDA_ARCH__
#pragma unroll 1  // one child at a time on the GPU: unrolled, the 16-bit kernels spill registers
#endif
  for (long k = 0; k < children; ++k) {
    const V fk = f(k);
    child_out(k, lstm_backward_forget(fk, c_child(k), dc_total), dc_total * fk);
  }
}

}  // namespace fastrnn
