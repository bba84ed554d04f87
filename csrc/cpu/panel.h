// The register-blocked product at the heart of the recurrent kernels, compiled per instruction set.
//
//   acc[r][g] = sum_k a[r * lda + k] * w[k * w_stride + g * W : + W]      r < R, g < G
//
// (summed over one or two such operands).
//
// One W-lane vector of G gates for R batch rows: per k, G vector loads of weights, R broadcasts,
// R*G fused multiply-adds. The forward step uses it with the weights repacked per block of units
// ([k][gate][lane]), so that the gates of a block of units come out together and the cell's
// pointwise math runs on them while they are in registers. KU partial sums per accumulator hide
// the FMA latency when R*G is small (batch 1).
#pragma once

#include "simd.h"

namespace fastrnn {
namespace FASTRNN_ISA {

// Accumulator registers the panel may use (the architecture has 32 vector registers with
// AVX-512, 16 otherwise).
constexpr int kAccumulators = FASTRNN_SIMD_BYTES == 64 ? 24 : 12;

// Partial sums per accumulator: enough independent FMA chains (two FMA units, four cycles of
// latency, and more to cover the loads) within the accumulator registers.
template <int RG>
constexpr int unroll() {
  constexpr int chains = FASTRNN_SIMD_BYTES == 64 ? 16 : 8;
  int ku = (chains + RG - 1) / RG;
  while (ku > 1 && ku * RG > kAccumulators) --ku;
  return ku > 8 ? 8 : ku;
}

// Rows per panel call for G gates.
template <int G>
constexpr int panel_rows() {
  return kAccumulators / G < 1 ? 1 : (kAccumulators / G > 8 ? 8 : kAccumulators / G);
}

template <typename T, int R, int G>
struct PanelAcc {
  static constexpr int rows = R;
  Vec<T> v[R][G];
};

// One operand of a panel: rows of `a` (row stride lda) times the K rows of `w` (stride w_stride).
// A panel may sum two, e.g. x_t W_ih^T + h_{t-1} W_hh^T with both weights packed alike.
template <typename T>
struct Operand {
  const T* a;
  long lda;
  const T* w;
  long w_stride;
  long K;
  Operand rows_from(long r0) const { return {a + r0 * lda, lda, w, w_stride, K}; }
};

// acc[r][g] += a[r][k] * w[k][g] for one k.
template <typename T, int R, int G>
__attribute__((always_inline)) inline void accumulate_k(Vec<T> (&acc)[R][G], const Operand<T>& op, long k) {
  using V = Vec<T>;
  const T* wk = op.w + k * op.w_stride;
  V wg[G];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) wg[g] = V::load(wk + g * V::width);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const V ar(op.a[r * op.lda + k]);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) acc[r][g] = acc[r][g] + ar * wg[g];
  }
}

template <typename T, int R, int G, int KU>
inline void accumulate(Vec<T> (&acc)[KU][R][G], const Operand<T>& op) {
  long k = 0;
  for (; k + KU <= op.K; k += KU) {
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) accumulate_k<T, R, G>(acc[u], op, k + u);
  }
  for (; k < op.K; ++k) accumulate_k<T, R, G>(acc[0], op, k);
}

// The sum of the panels of one or two operands (the second may have K = 0).
template <typename T, int R, int G>
inline PanelAcc<T, R, G> panel(const Operand<T>& first, const Operand<T>& second) {
  using V = Vec<T>;
  constexpr int KU = unroll<R * G>();
  V acc[KU][R][G];
  for (int u = 0; u < KU; ++u)
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < G; ++g) acc[u][r][g] = V(T(0));
  accumulate<T, R, G, KU>(acc, first);
  if (second.K > 0) accumulate<T, R, G, KU>(acc, second);
  PanelAcc<T, R, G> out;
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) {
      V s = acc[0][r][g];
      for (int u = 1; u < KU; ++u) s = s + acc[u][r][g];
      out.v[r][g] = s;
    }
  return out;
}

// Rows of `a` stored transposed: a[k * R + r] for R rows, against the K rows of `w`.
template <typename T>
struct RowsT {
  const T* a;
  const T* w;
  long w_stride;
  long K;
};

// Two independent panels in one pass over k: `first` (a step's recurrent product, bound by the
// rate its weights stream from L2) and `second` (RB rows, stored transposed so that one pointer
// reaches them all), whose loads and FMAs run in the cycles the first spends waiting. Each keeps
// one partial sum per accumulator: the two together are the independent chains.
template <typename T, int RA, int GA, int RB, int GB>
inline void panel_pair(const Operand<T>& first, const RowsT<T>& second, PanelAcc<T, RA, GA>& out_a,
                       PanelAcc<T, RB, GB>& out_b) {
  using V = Vec<T>;
  static_assert(RA * GA + RB * GB <= kAccumulators, "panel_pair: more accumulators than registers");
  V acc_a[RA][GA], acc_b[RB][GB];
  for (int r = 0; r < RA; ++r)
    for (int g = 0; g < GA; ++g) acc_a[r][g] = V(T(0));
  for (int r = 0; r < RB; ++r)
    for (int g = 0; g < GB; ++g) acc_b[r][g] = V(T(0));
  const auto second_k = [&](long k) __attribute__((always_inline)) {
    const T* wk = second.w + k * second.w_stride;
    const T* ak = second.a + k * RB;
    V wg[GB];
    for (int g = 0; g < GB; ++g) wg[g] = V::load(wk + g * V::width);
    for (int r = 0; r < RB; ++r) {
      const V ar(ak[r]);
      for (int g = 0; g < GB; ++g) acc_b[r][g] = acc_b[r][g] + ar * wg[g];
    }
  };
  const long K = first.K < second.K ? first.K : second.K;
  long k = 0;
  for (; k < K; ++k) {
    accumulate_k<T, RA, GA>(acc_a, first, k);
    second_k(k);
  }
  for (long ka = k; ka < first.K; ++ka) accumulate_k<T, RA, GA>(acc_a, first, ka);
  for (long kb = k; kb < second.K; ++kb) second_k(kb);
  for (int r = 0; r < RA; ++r)
    for (int g = 0; g < GA; ++g) out_a.v[r][g] = acc_a[r][g];
  for (int r = 0; r < RB; ++r)
    for (int g = 0; g < GB; ++g) out_b.v[r][g] = acc_b[r][g];
}

// Calls body(panel result, r0) for rows [0, rows) in panels of at most RMAX rows.
template <typename T, int G, int RMAX, typename Body>
inline void for_each_panel(long rows, const Operand<T>& first, const Operand<T>& second, Body&& body) {
  long r0 = 0;
  for (; r0 + RMAX <= rows; r0 += RMAX)
    body(panel<T, RMAX, G>(first.rows_from(r0), second.rows_from(r0)), r0);
  if (r0 < rows) {
    if constexpr (RMAX > 1) {
      for_each_panel<T, G, RMAX - 1>(rows - r0, first.rows_from(r0), second.rows_from(r0),
                                     [&](const auto& acc, long r) { body(acc, r0 + r); });
    }
  }
}

// The same with one operand.
template <typename T, int G, int RMAX, typename Body>
inline void for_each_panel(long rows, const T* a, long lda, const T* w, long w_stride, long K,
                           Body&& body) {
  for_each_panel<T, G, RMAX>(rows, Operand<T>{a, lda, w, w_stride, K}, Operand<T>{a, lda, w, w_stride, 0},
                             static_cast<Body&&>(body));
}

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
