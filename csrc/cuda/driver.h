// The time loop of one layer in one direction on a device (see layer.h), written once over a
// Backend that supplies memory, GEMMs and "run this per-thread function over n indices":
// CudaBackend (sequence.cu: cuBLAS and kernel launches on the caller's stream) or the host
// tests' HostBackend (plain loops), so that the loop, its indexing and the per-thread functions are
// tested without a GPU.
//
// Forward: the input projection of all steps in one GEMM, then per step the recurrent GEMM and one
// fused pointwise pass. Backward: per step in reverse, the pointwise backward and the recurrent
// GEMM; then dx, the weight and the bias gradients as GEMMs over all rows.
//
// Backend interface:
//   be.template alloc<U>(n)  -> buffer with .data(), n elements of U
//   be.gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc)
//        row-major C (m, n) = op(A) op(B) (+ C when accumulate), A and B of T, C of T or A,
//        the sums in A; m, n, k > 0
//   be.each(n, f)            -> f(i) for every i in [0, n), in any order
#pragma once

#include <vector>

#include "layer.h"
#include "pointwise.cuh"

namespace fastrnn {
namespace gpu {

// Steps in packed rows, in the order the forward visits them.
class StepTable {
 public:
  StepTable(long steps, long batch, const long* batch_sizes, bool reverse)
      : reverse_(reverse), offset_(steps + 1, 0), size_(steps, batch) {
    for (long t = 0; t < steps; ++t) {
      if (batch_sizes) size_[t] = batch_sizes[t];
      offset_[t + 1] = offset_[t] + size_[t];
    }
  }
  long steps() const { return static_cast<long>(size_.size()); }
  long rows() const { return offset_.back(); }
  // The k-th step the forward visits (time t = k, or steps-1-k reversed) and the one before it.
  StepRows visit(long k) const {
    const long t = reverse_ ? steps() - 1 - k : k;
    const long prev = reverse_ ? t + 1 : t - 1;
    const bool has_prev = prev >= 0 && prev < steps();
    return StepRows{offset_[t], size_[t], has_prev ? offset_[prev] : 0, has_prev ? size_[prev] : 0};
  }

 private:
  bool reverse_;
  std::vector<long> offset_, size_;
};

// The GEMM with empty sizes handled: nothing to do, or (k = 0) a zero product.
template <typename B, typename T, typename C>
void gemm(B& be, bool ta, bool tb, long m, long n, long k, const T* a, long lda, const T* b,
          long ldb, bool accumulate, C* c, long ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) be.each(m * n, CopyOrZero<C, C>{c, nullptr});  // every use has ldc == n
    return;
  }
  be.gemm(ta, tb, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

// With a projection (LSTM, proj = P > 0): per step also y = h_full W_hr^T, one GEMM, and the state
// is that y; backward turns d y into d h_full with W_hr per step and sums dW_hr at the end.
template <typename B, typename T, typename A>
void run_forward(B& be, const LayerForward<T, A>& a) {
  const StepTable st(a.steps, a.batch, a.batch_sizes, a.reverse);
  const long H = a.hidden, S = a.state(), P = a.proj, G = gate_count(a.cell) * H, rows = st.rows();
  const bool lstm = a.cell == CellKind::lstm;
  be.each(a.batch * S, CopyOrZero<T, T>{a.h_n, a.h0});
  auto c_state = be.template alloc<A>(lstm ? a.batch * H : 0);
  if (lstm) be.each(a.batch * H, CopyOrZero<A, T>{c_state.data(), a.c0});
  auto h_full = be.template alloc<T>(P > 0 ? a.batch * H : 0);  // (batch, H): o*tanh(c) of a step
  const long ld = saved_columns(a.cell, H, P);

  auto xproj = be.template alloc<A>(rows * G);  // (rows, G): W_ih x of every row
  auto hproj = be.template alloc<A>(a.batch * G);  // (batch, G): W_hh h_prev of one step
  gemm(be, false, true, rows, G, a.input, a.x, a.input, a.w_ih, a.input, false, xproj.data(), G);
  for (long k = 0; k < a.steps; ++k) {
    const StepRows s = st.visit(k);
    if (s.rows == 0) continue;
    gemm(be, false, true, s.rows, G, S, a.h_n, S, a.w_hh, S, false, hproj.data(), G);
    const long n = s.rows * H;
    const A *xp = xproj.data(), *hp = hproj.data();
    switch (a.cell) {
      case CellKind::rnn_tanh:
        be.each(n, RnnForwardStep<T, A, Activation::tanh>{s, H, xp, hp, a.b_ih, a.b_hh, a.h_n, a.y});
        break;
      case CellKind::rnn_relu:
        be.each(n, RnnForwardStep<T, A, Activation::relu>{s, H, xp, hp, a.b_ih, a.b_hh, a.h_n, a.y});
        break;
      case CellKind::lstm:
        be.each(n, LstmForwardStep<T, A>{s, H, xp, hp, a.b_ih, a.b_hh, c_state.data(), a.h_n, a.y,
                                         a.saved, ld, P > 0 ? h_full.data() : nullptr});
        break;
      case CellKind::gru:
        be.each(n, GruForwardStep<T, A>{s, H, xp, hp, a.b_ih, a.b_hh, a.h_n, a.y, a.saved});
        break;
    }
    if (P > 0) {  // y = h_full W_hr^T, then the state is y
      T* y = a.y + s.row0 * P;
      gemm(be, false, true, s.rows, P, H, h_full.data(), H, a.w_hr, H, false, y, P);
      be.each(s.rows * P, CopyOrZero<T, T>{a.h_n, y});
    }
  }
  if (lstm) be.each(a.batch * H, CopyOrZero<T, A>{a.c_n, c_state.data()});
}

template <typename B, typename T, typename A>
void run_backward(B& be, const LayerBackward<T, A>& g) {
  const LayerForward<T, A>& a = *g.fwd;
  const StepTable st(a.steps, a.batch, a.batch_sizes, a.reverse);
  const long H = a.hidden, S = a.state(), P = a.proj, I = a.input, G = gate_count(a.cell) * H;
  const long rows = st.rows(), ld = saved_columns(a.cell, H, P);
  const bool lstm = a.cell == CellKind::lstm, gru = a.cell == CellKind::gru;
  auto dh_state = be.template alloc<A>(a.batch * S);
  auto dc_state = be.template alloc<A>(lstm ? a.batch * H : 0);
  be.each(a.batch * S, CopyOrZero<A, T>{dh_state.data(), g.dh_n});
  if (lstm) be.each(a.batch * H, CopyOrZero<A, T>{dc_state.data(), g.dc_n});
  // The projection's buffers: W_hr in A for the GEMMs with dh_out; d y of every row (rows, P);
  // d h_full of one step (batch, H).
  auto w_hr = be.template alloc<A>(P > 0 ? P * H : 0);
  auto dh_out = be.template alloc<A>(P > 0 ? rows * P : 0);
  auto dh_full = be.template alloc<A>(P > 0 ? a.batch * H : 0);
  if (P > 0) be.each(P * H, CopyOrZero<A, T>{w_hr.data(), a.w_hr});

  auto dgx = be.template alloc<T>(rows * G);            // d pre-activations, x side
  auto dgh_gru = be.template alloc<T>(gru ? rows * G : 0);  // the h side, where it differs
  auto h_prevs = be.template alloc<T>(rows * S);
  T* dgh = gru ? dgh_gru.data() : dgx.data();
  for (long k = a.steps - 1; k >= 0; --k) {
    const StepRows s = st.visit(k);
    if (s.rows == 0) continue;
    const BackwardCommon<T, A> c{s, H, S, a.y, a.h0, g.dy, dh_state.data(), h_prevs.data()};
    const long n = s.rows * H;
    if (P > 0) {  // d h_full = d y W_hr
      be.each(s.rows * P, ProjectedDh<T, A>{c, dh_out.data()});
      gemm(be, false, false, s.rows, H, P, dh_out.data() + s.row0 * P, P, w_hr.data(), H, false,
           dh_full.data(), H);
    }
    switch (a.cell) {
      case CellKind::rnn_tanh: be.each(n, RnnBackwardStep<T, A, Activation::tanh>{c, dgx.data()}); break;
      case CellKind::rnn_relu: be.each(n, RnnBackwardStep<T, A, Activation::relu>{c, dgx.data()}); break;
      case CellKind::lstm:
        be.each(n, LstmBackwardStep<T, A>{c, a.saved, ld, a.c0, dc_state.data(), dgx.data(),
                                          P > 0 ? dh_full.data() : nullptr});
        break;
      case CellKind::gru: be.each(n, GruBackwardStep<T, A>{c, a.saved, dgx.data(), dgh}); break;
    }
    // d h_prev = W_hh^T d pre_h (the GRU adds its direct part dh * z, already in dh_state).
    gemm(be, false, false, s.rows, S, G, dgh + s.row0 * G, G, a.w_hh, S, gru, dh_state.data(), S);
  }
  be.each(a.batch * S, CopyOrZero<T, A>{g.dh0, dh_state.data()});
  if (lstm) be.each(a.batch * H, CopyOrZero<T, A>{g.dc0, dc_state.data()});

  gemm(be, false, false, rows, I, G, dgx.data(), G, a.w_ih, I, false, g.dx, I);
  gemm(be, true, false, G, I, rows, dgx.data(), G, a.x, I, false, g.dw_ih, I);
  gemm(be, true, false, G, S, rows, dgh, G, h_prevs.data(), S, false, g.dw_hh, S);
  if (P > 0)  // dW_hr = d y^T (o*tanh(c)) over all rows
    gemm(be, true, false, P, H, rows, dh_out.data(), P, a.saved + 5 * H, ld, false, g.dw_hr, H);
  if (g.db_ih) {  // column sums as a product with a column of ones
    auto ones = be.template alloc<T>(rows);
    be.each(rows, Fill<T>{ones.data(), 1.0f});
    gemm(be, true, false, G, 1, rows, dgx.data(), G, ones.data(), 1, false, g.db_ih, 1);
    gemm(be, true, false, G, 1, rows, dgh, G, ones.data(), 1, false, g.db_hh, 1);
  }
}

}  // namespace gpu
}  // namespace fastrnn
