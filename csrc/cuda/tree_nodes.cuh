// The per-thread work of the Tree-LSTM kernels (tree_driver.h): like pointwise.cuh, small structs
// whose operator()(i) is a pure function of its index, run over a grid on the GPU and over the
// whole index space by the host tests (tests/cuda_host/tree_shim.cpp). The cell is
// csrc/cells/tree_lstm.h's, the one the CPU level loop calls; here only the indexing. Element
// i = (b, j) is row r0 + b of a level (rows: the forest's order, forest.h) and hidden unit j < H.
// Each child has one parent, so the threads of a level never write the same child.
//
// Buffers born in tree_driver.h, by row: gates (n, 4H) A, i f u o (the input side, then the
// activated gates); forget (edges, H) A; c (n, H) A; h (n, H) T; dh, dc (n, H) A; dgx (n, 4H) T;
// dgh (n, (3+N)H) T for the N-ary kind; d_forget (edges, H) T for Child-Sum.
#pragma once

#include "../cells/tree_lstm.h"
#include "pointwise.cuh"

namespace fastrnn {
namespace gpu {

// The schedule's device arrays that the kernels index with.
struct TreeEdges {
  const long* child_offsets;  // (n + 1,) row r's edges: child_offsets[r] .. [r+1]
  const long* child_rows;     // (edges,) the child row of each edge
};

// dst (rows, cols) by row = src by node (order: row -> node), converted; zeros when src is null.
template <typename D, typename S>
struct RowsFromNodes {
  D* dst;
  const S* src;
  const long* order;
  long cols;
  FASTRNN_HD void operator()(long i) const {
    const long r = i / cols, j = i % cols;
    dst[i] = src ? cvt<D>(src[order[r] * cols + j]) : D(0);
  }
};

// dst (rows, cols) by node = src by row, converted.
template <typename D, typename S>
struct RowsToNodes {
  D* dst;
  const S* src;
  const long* order;
  long cols;
  FASTRNN_HD void operator()(long i) const {
    const long r = i / cols, j = i % cols;
    dst[order[r] * cols + j] = cvt<D>(src[i]);
  }
};

// Every row of dst (rows, cols), leading dimension ld, set to b1 + b2 (either may be null), or 0.
template <typename T, typename A>
struct BiasRows {
  A* dst;
  long cols, ld;
  const T *b1, *b2;
  FASTRNN_HD void operator()(long i) const {
    const long r = i / cols, k = i % cols;
    dst[r * ld + k] = (b1 ? cvt<A>(b1[k]) : A(0)) + (b2 ? cvt<A>(b2[k]) : A(0));
  }
};

// The children's h of rows r0 .. r0 + rows, as the level's recurrent GEMM reads them. Child-Sum
// (arity 0): out (rows, H) = h~ = sum_k h_k. N-ary: out (rows, N*H) = [h_1; ...; h_N], zeros
// where a child is missing.
template <typename T, typename A>
struct GatherChildren {
  T* out;
  const T* h;
  TreeEdges edges;
  long r0, H, arity;
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, r = r0 + b;
    const long eb = edges.child_offsets[r], kids = edges.child_offsets[r + 1] - eb;
    const long* child = edges.child_rows + eb;
    if (arity == 0) {
      A sum(0);
      for (long k = 0; k < kids; ++k) sum += cvt<A>(h[child[k] * H + j]);
      out[b * H + j] = cvt<T>(sum);
      return;
    }
    T* o = out + b * arity * H + j;
    for (long k = 0; k < arity; ++k) o[k * H] = k < kids ? h[child[k] * H + j] : T(0);
  }
};

// One level's nodes, after its GEMMs: gates' input side (and for Child-Sum U h~ in i, u, o), and
// the recurrent pre-activations: Child-Sum forget (edges, H) holds U_f h_k of each edge; N-ary
// rec (rows, (3+N)H) holds U [h_1; ...; h_N] + b_hh, blocks i, f_1 .. f_N, u, o.
template <typename T, typename A>
struct TreeForwardNode {
  TreeEdges edges;
  long r0, e0, H, arity;
  A* gates;      // (n, 4H); with `keep`, the activated i, u, o overwrite the pre-activations
  const A* rec;  // (level rows, (3+N)H) N-ary, else null
  A* forget;     // from edge e0 on: Child-Sum pre-activations in, activated out with `keep`;
                 // N-ary: activated out with `keep`, null otherwise
  A* c;          // (n, H)
  T* h;          // (n, H)
  bool keep;     // training: write the activated gates for backward
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, r = r0 + b, N = arity;
    A* g = gates + r * 4 * H;
    const long eb = edges.child_offsets[r], kids = edges.child_offsets[r + 1] - eb;
    const long* child = edges.child_rows + eb;
    A* f_row = forget ? forget + (eb - e0) * H : nullptr;  // child k's at f_row + k*H
    const A* q = rec ? rec + b * (3 + N) * H : nullptr;
    LstmGates<A> gv{g[j], A(0), g[2 * H + j], g[3 * H + j]};
    if (q) {
      gv.i += q[j];
      gv.g += q[(1 + N) * H + j];
      gv.o += q[(2 + N) * H + j];
    }
    const A xf = g[H + j];
    A c_new, h_new;
    tree_lstm_forward_unit(
        gv, kids, [&](long k) { return xf + (q ? q[(1 + k) * H + j] : f_row[k * H + j]); },
        [&](long k) { return c[child[k] * H + j]; },
        [&](long k, A fk) {
          if (keep) f_row[k * H + j] = fk;
        },
        c_new, h_new);
    c[r * H + j] = c_new;
    h[r * H + j] = cvt<T>(h_new);
    if (keep) {
      g[j] = gv.i;
      g[2 * H + j] = gv.g;
      g[3 * H + j] = gv.o;
    }
  }
};

// One level's nodes in backward: d pre-activations from the node's total dh and dc, each child's
// forget-gate gradient and its share of dc (dc_k += dc * f_k, the level's threads own their
// children). dgx gets i, sum_k d f_k (the x side's f is shared), u, o; N-ary dgh gets i,
// f_1 .. f_N (zero where missing), u, o; Child-Sum d_forget gets each edge's.
template <typename T, typename A>
struct TreeBackwardNode {
  TreeEdges edges;
  long r0, H, arity;
  const A *gates, *forget, *c;  // saved by the forward: (n, 4H), (edges, H), (n, H)
  const A* dh;                  // (n, H) total d h: the caller's plus the parent's
  A* dc;                        // (n, H) the caller's plus what the parent sends down
  T* dgx;                       // (n, 4H)
  T* dgh;                       // (n, (3+N)H) N-ary, else null
  T* d_forget;                  // (edges, H) Child-Sum, else null
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, r = r0 + b, N = arity;
    const A* g = gates + r * 4 * H;
    const long eb = edges.child_offsets[r], kids = edges.child_offsets[r + 1] - eb;
    const long* child = edges.child_rows + eb;
    const LstmGates<A> act{g[j], A(0), g[2 * H + j], g[3 * H + j]};
    T* gh = dgh ? dgh + r * (3 + N) * H : nullptr;
    T* d_f = gh ? gh + H : d_forget + eb * H;  // child k's at d_f + k*H
    A d_f_sum(0);
    LstmGates<A> dpre;
    tree_lstm_backward_unit(
        act, c[r * H + j], dh[r * H + j], dc[r * H + j], kids,
        [&](long k) { return forget[(eb + k) * H + j]; },
        [&](long k) { return c[child[k] * H + j]; },
        [&](long k, A d_pre_f, A d_c_child) {
          d_f[k * H + j] = cvt<T>(d_pre_f);
          d_f_sum += d_pre_f;
          dc[child[k] * H + j] += d_c_child;
        },
        dpre);
    T* gx = dgx + r * 4 * H;
    gx[j] = cvt<T>(dpre.i);
    gx[H + j] = cvt<T>(d_f_sum);
    gx[2 * H + j] = cvt<T>(dpre.g);
    gx[3 * H + j] = cvt<T>(dpre.o);
    if (gh) {
      gh[j] = cvt<T>(dpre.i);
      for (long k = kids; k < N; ++k) d_f[k * H + j] = T(0);
      gh[(1 + N) * H + j] = cvt<T>(dpre.g);
      gh[(2 + N) * H + j] = cvt<T>(dpre.o);
    }
  }
};

// After the level's backward GEMMs, each child's dh += its part of d_in: Child-Sum d_in (rows, H)
// is d h~ (every child gets it) and d_edge (edges, H) the part through its forget gate; N-ary
// d_in (rows, N*H) is [d h_1; ...; d h_N].
template <typename A>
struct ChildGrads {
  TreeEdges edges;
  long r0, e0, H, arity;
  const A *d_in, *d_edge;  // d_edge: Child-Sum, from edge e0 on; null for N-ary
  A* dh;                   // (n, H)
  FASTRNN_HD void operator()(long i) const {
    const long b = i / H, j = i % H, r = r0 + b;
    const long eb = edges.child_offsets[r], ee = edges.child_offsets[r + 1];
    for (long e = eb; e < ee; ++e) {
      A& dst = dh[edges.child_rows[e] * H + j];
      if (arity) dst += d_in[b * arity * H + (e - eb) * H + j];
      else dst += d_in[b * H + j] + d_edge[(e - e0) * H + j];
    }
  }
};

}  // namespace gpu
}  // namespace fastrnn
