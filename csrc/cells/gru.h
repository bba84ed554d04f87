// GRU cell, one hidden unit, PyTorch's gate order r, z, n:
//   r = σ(xr + hr)   z = σ(xz + hz)   n = tanh(xn + r*hn)   h = (1-z)*n + z*h_prev
// with xr = (W_ir x + b_ir) etc. and hn = W_hn h_prev + b_hn inside r*(...).
#pragma once

#include "common.h"

namespace fastrnn {

template <typename V>
struct GruGates {
  V r, z, n;
};

// In: x-side pre-activations xg (r, z, n), h-side hg (r, z, n). Out: activations, the new h.
template <typename V>
FASTRNN_HD V gru_forward_unit(const GruGates<V>& xg, const GruGates<V>& hg, V h_prev,
                              GruGates<V>& act) {
  act.r = fr_sigmoid(xg.r + hg.r);
  act.z = fr_sigmoid(xg.z + hg.z);
  act.n = fr_tanh(xg.n + act.r * hg.n);
  return act.n + act.z * (h_prev - act.n);
}

// In: activations, hn (= W_hn h_prev + b_hn), h_prev, dh.
// Out: d pre on the x side (dx_side), on the h side (dh_side: differs in n, scaled by r),
// and returns the direct part of d h_prev (dh * z); the caller adds W_hh^T dh_side.
template <typename V>
FASTRNN_HD V gru_backward_unit(const GruGates<V>& act, V hn, V h_prev, V dh, GruGates<V>& dx_side,
                               GruGates<V>& dh_side) {
  const V one(1);
  const V dn = dh * (one - act.z) * (one - act.n * act.n);
  const V dz = dh * (h_prev - act.n) * act.z * (one - act.z);
  const V dr = dn * hn * act.r * (one - act.r);
  dx_side.r = dr;
  dx_side.z = dz;
  dx_side.n = dn;
  dh_side.r = dr;
  dh_side.z = dz;
  dh_side.n = dn * act.r;
  return dh * act.z;
}

}  // namespace fastrnn
