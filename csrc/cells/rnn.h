// Elman RNN cell, one hidden unit:  h = act(pre),  pre = W_ih x + b_ih + W_hh h_prev + b_hh.
#pragma once

#include "common.h"

namespace fastrnn {

enum class Activation { tanh, relu };

template <Activation act, typename V>
FASTRNN_HD V rnn_forward_unit(V pre) {
  if constexpr (act == Activation::tanh) return fr_tanh(pre);
  else return fr_relu(pre);
}

// d pre from d h, using the saved output h (tanh' = 1 - h^2; relu' = [h > 0]).
template <Activation act, typename V>
FASTRNN_HD V rnn_backward_unit(V h, V dh) {
  if constexpr (act == Activation::tanh) return dh * (V(1) - h * h);
  else return fr_relu_grad(h, dh);
}

}  // namespace fastrnn
