// The per-thread work of every CUDA kernel: small structs whose operator()(i) does element i of
// one step, a pure function of its index and the pointers it holds. The CUDA build launches them
// over a grid (launch.cuh); the host tests run the very same functions over the whole index space
// on the CPU (tests/cuda_host/shim.cpp). The gate math is csrc/cells'; here only the indexing:
// element i = (b, j) is batch row b < rows of the step and hidden unit j < H.
//
// Types: T stored (float, double, __half, __nv_bfloat16), A arithmetic (float or double).
// Buffers born in driver.h: xproj (rows, G*H) A, hproj (batch, G*H) A, saved (rows, ld) A,
// dgates (rows, G*H) T, h_prevs (rows, S) T, running states (batch, S) and (batch, H); S is the
// LSTM's projection size, else H.
#pragma once

#include "../cells/gru.h"
#include "../cells/lstm.h"
#include "../cells/rnn.h"

namespace fastrnn {
namespace gpu {

template <typename To, typename From>
FASTRNN_HD To cvt(From v) {
  return static_cast<To>(v);
}

// Where one step lies in the packed rows, and the step before it in the sequence's own order
// (t-1 forward, t+1 reversed): batch row b has a previous step iff b < prev_rows.
struct StepRows {
  long row0, rows;            // this step: packed rows row0 .. row0 + rows
  long prev_row0, prev_rows;  // the previous step (prev_rows 0: every row starts here)
};

// dst[i] = src[i] converted, or 0 when src is null: state initialisation and final conversions.
template <typename D, typename S>
struct CopyOrZero {
  D* dst;
  const S* src;
  FASTRNN_HD void operator()(long i) const { dst[i] = src ? cvt<D>(src[i]) : D(0); }
};

template <typename T>
struct Fill {
  T* dst;
  float value;
  FASTRNN_HD void operator()(long i) const { dst[i] = cvt<T>(value); }
};

// Both biases of pre-activation column k (b_ih + b_hh), or 0 without bias.
template <typename T, typename A>
FASTRNN_HD A bias_of(const T* b_ih, const T* b_hh, long k) {
  return b_ih ? cvt<A>(b_ih[k]) + cvt<A>(b_hh[k]) : A(0);
}

// ---- forward: one step, after hproj = h_state @ W_hh^T -------------------------------------

template <typename T, typename A, Activation act>
struct RnnForwardStep {
  StepRows s;
  long H;
  const A *xproj, *hproj;
  const T *b_ih, *b_hh;
  T *h_state, *y;
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, row = s.row0 + b;
    const A pre = xproj[row * H + j] + hproj[b * H + j] + bias_of<T, A>(b_ih, b_hh, j);
    const T h = cvt<T>(rnn_forward_unit<act>(pre));
    h_state[b * H + j] = h;
    y[row * H + j] = h;
  }
};

// With a projection, h = o*tanh(c) goes to h_full (and saved's 6th block) for the projection
// GEMM; y and h_state are the projection's.
template <typename T, typename A>
struct LstmForwardStep {
  StepRows s;
  long H;
  const A *xproj, *hproj;  // (.., 4H), i f g o
  const T *b_ih, *b_hh;
  A* c_state;
  T *h_state, *y;
  A* saved;     // (rows, ld) or null; ld 5H, 6H with a projection
  long ld;
  T* h_full;    // (batch, H) with a projection, else null
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, row = s.row0 + b, G = 4 * H;
    const A* xg = xproj + row * G;
    const A* hg = hproj + b * G;
    auto pre = [&](long k) { return xg[k * H + j] + hg[k * H + j] + bias_of<T, A>(b_ih, b_hh, k * H + j); };
    LstmGates<A> g{pre(0), pre(1), pre(2), pre(3)};
    A c, h;
    lstm_forward_unit(g, c_state[b * H + j], c, h);
    c_state[b * H + j] = c;
    if (h_full) {
      h_full[b * H + j] = cvt<T>(h);
    } else {
      h_state[b * H + j] = cvt<T>(h);
      y[row * H + j] = cvt<T>(h);
    }
    if (saved) {
      A* sv = saved + row * ld;
      sv[j] = g.i;
      sv[H + j] = g.f;
      sv[2 * H + j] = g.g;
      sv[3 * H + j] = g.o;
      sv[4 * H + j] = c;
      if (h_full) sv[5 * H + j] = h;
    }
  }
};

template <typename T, typename A>
struct GruForwardStep {
  StepRows s;
  long H;
  const A *xproj, *hproj;  // (.., 3H), r z n
  const T *b_ih, *b_hh;
  T *h_state, *y;
  A* saved;  // (rows, 4H) or null
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, row = s.row0 + b, G = 3 * H;
    const A* xp = xproj + row * G;
    const A* hp = hproj + b * G;
    auto side = [&](const A* p, const T* bias, long k) {
      return p[k * H + j] + (bias ? cvt<A>(bias[k * H + j]) : A(0));
    };
    const GruGates<A> xg{side(xp, b_ih, 0), side(xp, b_ih, 1), side(xp, b_ih, 2)};
    const GruGates<A> hg{side(hp, b_hh, 0), side(hp, b_hh, 1), side(hp, b_hh, 2)};
    GruGates<A> act;
    const T h = cvt<T>(gru_forward_unit(xg, hg, cvt<A>(h_state[b * H + j]), act));
    h_state[b * H + j] = h;
    y[row * H + j] = h;
    if (saved) {
      A* sv = saved + row * 4 * H;
      sv[j] = act.r;
      sv[H + j] = act.z;
      sv[2 * H + j] = act.n;
      sv[3 * H + j] = hg.n;
    }
  }
};

// ---- backward: one step, before dh_state[0:rows] (+)= dgates_h @ W_hh ----------------------

// The pieces every backward step shares: the total d h of (b, j) and the h_prev it records.
// S: the width of h (the LSTM's projection size, else H); indices j < S.
template <typename T, typename A>
struct BackwardCommon {
  StepRows s;
  long H, S;
  const T *y, *h0, *dy;  // (rows, S), (batch, S), (rows, S); h0, dy: null for zeros
  A* dh_state;           // (batch, S): in, d h from the later step; out, see each cell
  T* h_prevs;            // (rows, S): h_prev of every row, for dW_hh
  FASTRNN_HD A dh_total(long b, long j) const {
    const A dh = dh_state[b * S + j];
    return dy ? dh + cvt<A>(dy[(s.row0 + b) * S + j]) : dh;
  }
  // h_prev of (b, j), also written to h_prevs.
  FASTRNN_HD T h_prev(long b, long j) const {
    const T h = b < s.prev_rows ? y[(s.prev_row0 + b) * S + j] : h0 ? h0[b * S + j] : T(0);
    h_prevs[(s.row0 + b) * S + j] = h;
    return h;
  }
};

// The LSTM projection's d h of every row, (rows, S) over (b, p): the GEMM with W_hr turns it
// into d (o*tanh(c)); dW_hr sums it against saved's 6th block.
template <typename T, typename A>
struct ProjectedDh {
  BackwardCommon<T, A> c;
  A* dh_out;  // (rows, S)
  FASTRNN_HD void operator()(long i) const {
    const long b = i / c.S, p = i % c.S;
    dh_out[(c.s.row0 + b) * c.S + p] = c.dh_total(b, p);
  }
};

template <typename T, typename A, Activation act>
struct RnnBackwardStep {
  BackwardCommon<T, A> c;
  T* dgates;  // (rows, H)
  FASTRNN_HD void operator()(long i) const {
    const long H = c.H, b = i / H, j = i % H, row = c.s.row0 + b;
    c.h_prev(b, j);
    dgates[row * H + j] = cvt<T>(rnn_backward_unit<act>(cvt<A>(c.y[row * H + j]), c.dh_total(b, j)));
  }
};

template <typename T, typename A>
struct LstmBackwardStep {
  BackwardCommon<T, A> c;
  const A* saved;  // (rows, ld)
  long ld;
  const T* c0;     // null: zeros
  A* dc_state;     // (batch, H): in, d c from the later step; out, d c_prev
  T* dgates;       // (rows, 4H)
  const A* dh_full;  // (batch, H): d (o*tanh(c)) with a projection; null: c.dh_total
  FASTRNN_HD void operator()(long i) const {
    const long H = c.H, b = i / H, j = i % H, row = c.s.row0 + b;
    if (j < c.S) c.h_prev(b, j);
    const A* sv = saved + row * ld;
    const A c_prev = b < c.s.prev_rows ? saved[(c.s.prev_row0 + b) * ld + 4 * H + j]
                     : c0              ? cvt<A>(c0[b * H + j])
                                       : A(0);
    const LstmGates<A> act{sv[j], sv[H + j], sv[2 * H + j], sv[3 * H + j]};
    A dc = dc_state[b * H + j];
    LstmGates<A> d;
    const A dh = dh_full ? dh_full[b * H + j] : c.dh_total(b, j);
    lstm_backward_unit(act, sv[4 * H + j], c_prev, dh, dc, d);
    dc_state[b * H + j] = dc;
    T* dg = dgates + row * 4 * H;
    dg[j] = cvt<T>(d.i);
    dg[H + j] = cvt<T>(d.f);
    dg[2 * H + j] = cvt<T>(d.g);
    dg[3 * H + j] = cvt<T>(d.o);
  }
};

// Leaves dh * z (the direct part of d h_prev) in dh_state; the GEMM adds W_hh^T dgates_h.
template <typename T, typename A>
struct GruBackwardStep {
  BackwardCommon<T, A> c;
  const A* saved;        // (rows, 4H)
  T *dgates_x, *dgates_h;  // (rows, 3H) each
  FASTRNN_HD void operator()(long i) const {
    const long H = c.H, b = i / H, j = i % H, row = c.s.row0 + b;
    const A h_prev = cvt<A>(c.h_prev(b, j));
    const A* sv = saved + row * 4 * H;
    const GruGates<A> act{sv[j], sv[H + j], sv[2 * H + j]};
    GruGates<A> dx, dh;
    const A dh_direct = gru_backward_unit(act, sv[3 * H + j], h_prev, c.dh_total(b, j), dx, dh);
    c.dh_state[b * H + j] = dh_direct;
    T* gx = dgates_x + row * 3 * H;
    T* gh = dgates_h + row * 3 * H;
    gx[j] = cvt<T>(dx.r);
    gx[H + j] = cvt<T>(dx.z);
    gx[2 * H + j] = cvt<T>(dx.n);
    gh[j] = cvt<T>(dh.r);
    gh[H + j] = cvt<T>(dh.z);
    gh[2 * H + j] = cvt<T>(dh.n);
  }
};

}  // namespace gpu
}  // namespace fastrnn
