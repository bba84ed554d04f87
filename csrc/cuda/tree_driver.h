// The level loop of the Tree-LSTM on a device (see tree.h), written once over driver.h's Backend
// (memory, GEMMs, run-over-indices, plus be.upload(dst, src, n) from host memory as in
// stack_driver.h): the CUDA backend in tree.cu, the host tests' plain loops in
// tests/cuda_host/tree_shim.cpp. The schedule and the steps are csrc/cpu/tree.cpp's:
// Forward: the input projection of all nodes in one GEMM; then level by level, leaves first, the
// children's h gathered, the level's recurrent GEMM (Child-Sum: one more over the level's edges for
// the per-child forget gates) and one pass of the cell (tree_nodes.cuh) over the level's nodes.
// Backward: levels in reverse, the cell's backward, the GEMMs taking the level's gradients to its
// children and one pass adding them onto the children; then the weight gradients and dx as GEMMs
// over all nodes.
#pragma once

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "driver.h"  // gemm with empty sizes handled
#include "rows.cuh"
#include "tree.h"
#include "tree_nodes.cuh"

namespace fastrnn {
namespace gpu {

template <typename B, typename U>
using TreeBuffer = decltype(std::declval<B&>().template alloc<U>(0));

// Level l: rows r0 .. r1 and their edges e0 .. e1.
struct TreeLevel {
  long r0, r1, e0, e1;
  long rows() const { return r1 - r0; }
  long edges() const { return e1 - e0; }
};

// What backward needs from a training forward: the schedule (host and device) and, by row, the
// activated gates, the edges' forget gates, c and h, all in A but h (T: the GEMMs read it).
template <typename B, typename T, typename A>
struct TreeState {
  TreeForwardArgs<T> args;  // sizes, the caller's x and weights; forest's pointers not used again
  std::vector<long> level_offsets, child_offsets;  // host copies
  TreeBuffer<B, long> order, child_offsets_dev, child_rows;
  TreeBuffer<B, A> gates, forget, c;
  TreeBuffer<B, T> h;

  long n() const { return static_cast<long>(child_offsets.size()) - 1; }
  long n_edges() const { return child_offsets.back(); }
  long n_levels() const { return static_cast<long>(level_offsets.size()) - 1; }
  TreeLevel level(long l) const {
    const long r0 = level_offsets[l], r1 = level_offsets[l + 1];
    return {r0, r1, child_offsets[r0], child_offsets[r1]};
  }
  TreeEdges edges() const { return {child_offsets_dev.data(), child_rows.data()}; }
  // The most rows and edges of any level: the sizes of the per-level buffers.
  std::pair<long, long> widest() const {
    long rows = 0, edges = 0;
    for (long l = 0; l < n_levels(); ++l) {
      rows = std::max(rows, level(l).rows());
      edges = std::max(edges, level(l).edges());
    }
    return {rows, edges};
  }
};

template <typename B, typename U>
TreeBuffer<B, U> upload_array(B& be, const U* host, long n) {
  auto buf = be.template alloc<U>(n);
  be.upload(buf.data(), host, n);
  return buf;
}

// out (cols,) = column sums of a (rows, cols), as a product with a column of ones.
template <typename B, typename T, typename A>
void column_sums(B& be, const T* a, long rows, long cols, A* out) {
  auto ones = be.template alloc<T>(rows);
  be.each(rows, Fill<T>{ones.data(), 1.0f});
  gemm(be, true, false, cols, 1, rows, a, cols, ones.data(), 1, false, out, 1);
}

template <typename B, typename T, typename A>
std::unique_ptr<TreeState<B, T, A>> run_tree_forward(B& be, const TreeForwardArgs<T>& a) {
  const TreeSchedule& f = a.forest;
  auto st = std::make_unique<TreeState<B, T, A>>();
  st->args = a;
  st->level_offsets.assign(f.level_offsets, f.level_offsets + f.n_levels + 1);
  st->child_offsets.assign(f.child_offsets, f.child_offsets + f.n_nodes + 1);
  const long n = f.n_nodes, E = st->n_edges(), H = a.hidden, I = a.input, N = a.arity, G = 4 * H;
  const long in_width = N ? N * H : H;  // the level GEMM's input: h~ or [h_1; ...; h_N]
  const long rec_width = N ? (3 + N) * H : 0;
  st->order = upload_array(be, f.order, n);
  st->child_offsets_dev = upload_array(be, f.child_offsets, n + 1);
  st->child_rows = upload_array(be, f.child_rows, E);
  const long* order = st->order.data();
  const TreeEdges edges = st->edges();
  const auto [max_rows, max_edges] = st->widest();

  st->gates = be.template alloc<A>(n * G);
  st->c = be.template alloc<A>(n * H);
  st->h = be.template alloc<T>(n * H);
  // Training: every edge's forget gate; inference: Child-Sum's pre-activations of one level.
  st->forget = be.template alloc<A>((a.training ? E : N ? 0 : max_edges) * H);
  A* gates = st->gates.data();
  T* h = st->h.data();

  // gates (n, 4H) by row: W_ih x + b_ih, and for Child-Sum + b_hh (its f block, like b_ih's, is
  // shared by every child); the N-ary b_hh is per child, added with the level's GEMM.
  be.each(n * G, BiasRows<T, A>{gates, G, G, a.b_ih, N ? nullptr : a.b_hh});
  {
    auto x_rows = be.template alloc<T>(n * I);
    be.each(n * I, RowsFromNodes<T, T>{x_rows.data(), a.x, order, I});
    gemm(be, false, true, n, G, I, x_rows.data(), I, a.w_ih, I, true, gates, G);
  }

  auto h_in = be.template alloc<T>(max_rows * in_width);
  auto h_edge = be.template alloc<T>(N ? 0 : max_edges * H);
  auto rec = be.template alloc<A>(max_rows * rec_width);  // N-ary: U [h_1; ...; h_N] + b_hh
  for (long l = 0; l < st->n_levels(); ++l) {
    const TreeLevel lv = st->level(l);
    const long m = lv.rows(), ne = lv.edges();
    A* forget = st->forget.data() ? st->forget.data() + (a.training ? lv.e0 * H : 0) : nullptr;
    if (N)
      be.each(m * rec_width, BiasRows<T, A>{rec.data(), rec_width, rec_width, a.b_hh, nullptr});
    if (ne > 0) {
      be.each(m * H, GatherChildren<T, A>{h_in.data(), h, edges, lv.r0, H, N});
      if (!N) {  // i, u, o += U h~; the edges' forget pre-activations U_f h_k
        A* g = gates + lv.r0 * G;
        gemm(be, false, true, m, H, H, h_in.data(), H, a.w_hh, H, true, g, G);
        gemm(be, false, true, m, 2 * H, H, h_in.data(), H, a.w_hh + 2 * H * H, H, true,
             g + 2 * H, G);
        be.each(ne * H, GatherRows<T>{h_edge.data(), H, h, H, H, st->child_rows.data() + lv.e0});
        gemm(be, false, true, ne, H, H, h_edge.data(), H, a.w_hh + H * H, H, false, forget, H);
      } else {
        gemm(be, false, true, m, rec_width, in_width, h_in.data(), in_width, a.w_hh, in_width,
             true, rec.data(), rec_width);
      }
    }
    be.each(m * H, TreeForwardNode<T, A>{edges, lv.r0, lv.e0, H, N, gates,
                                         N ? rec.data() : nullptr, forget, st->c.data(), h,
                                         a.training});
  }
  be.each(n * H, RowsToNodes<T, T>{a.h, h, order, H});
  be.each(n * H, RowsToNodes<T, A>{a.c, st->c.data(), order, H});
  if (!a.training) return nullptr;
  st->args.forest = TreeSchedule{};
  st->args.h = st->args.c = nullptr;
  return st;
}

template <typename B, typename T, typename A>
void run_tree_backward(B& be, const TreeState<B, T, A>& st, const TreeBackwardArgs<T, A>& g) {
  const TreeForwardArgs<T>& a = st.args;
  const long n = st.n(), E = st.n_edges(), H = a.hidden, I = a.input, N = a.arity, G = 4 * H;
  const long in_width = N ? N * H : H, gh_width = N ? (3 + N) * H : 0;
  const long* order = st.order.data();
  const TreeEdges edges = st.edges();
  const auto [max_rows, max_edges] = st.widest();

  // The running d h and d c of every row: the caller's, plus what each parent sends down.
  auto dh = be.template alloc<A>(n * H);
  auto dc = be.template alloc<A>(n * H);
  be.each(n * H, RowsFromNodes<A, T>{dh.data(), g.dh, order, H});
  be.each(n * H, RowsFromNodes<A, T>{dc.data(), g.dc, order, H});
  auto dgx = be.template alloc<T>(n * G);               // d pre, x side: i, sum_k f_k, u, o
  auto d_forget = be.template alloc<T>(N ? 0 : E * H);  // Child-Sum: each edge's d pre f
  auto dgh = be.template alloc<T>(n * gh_width);        // N-ary: i, f_1 .. f_N, u, o
  auto d_in = be.template alloc<A>(max_rows * in_width);
  auto d_edge = be.template alloc<A>(N ? 0 : max_edges * H);

  for (long l = st.n_levels() - 1; l >= 0; --l) {
    const TreeLevel lv = st.level(l);
    const long m = lv.rows(), ne = lv.edges();
    be.each(m * H, TreeBackwardNode<T, A>{edges, lv.r0, H, N, st.gates.data(), st.forget.data(),
                                          st.c.data(), dh.data(), dc.data(), dgx.data(),
                                          N ? dgh.data() : nullptr, N ? nullptr : d_forget.data()});
    if (ne == 0) continue;
    // d of the level's GEMM input, then onto each child's dh.
    if (!N) {
      const T* dg = dgx.data() + lv.r0 * G;
      gemm(be, false, false, m, H, H, dg, G, a.w_hh, H, false, d_in.data(), H);
      gemm(be, false, false, m, H, 2 * H, dg + 2 * H, G, a.w_hh + 2 * H * H, H, true, d_in.data(),
           H);
      gemm(be, false, false, ne, H, H, d_forget.data() + lv.e0 * H, H, a.w_hh + H * H, H, false,
           d_edge.data(), H);
    } else {
      gemm(be, false, false, m, in_width, gh_width, dgh.data() + lv.r0 * gh_width, gh_width,
           a.w_hh, in_width, false, d_in.data(), in_width);
    }
    be.each(m * H, ChildGrads<A>{edges, lv.r0, lv.e0, H, N, d_in.data(),
                                 N ? nullptr : d_edge.data(), dh.data()});
  }

  // Weight gradients. Only rows above the leaves (level 0) have children.
  const long r_inner = st.n_levels() > 1 ? st.level_offsets[1] : n, inner = n - r_inner;
  auto h_in = be.template alloc<T>(inner * in_width);
  be.each(inner * H, GatherChildren<T, A>{h_in.data(), st.h.data(), edges, r_inner, H, N});
  if (!N) {
    auto h_edge = be.template alloc<T>(E * H);
    be.each(E * H, GatherRows<T>{h_edge.data(), H, st.h.data(), H, H, st.child_rows.data()});
    const T* dg = dgx.data() + r_inner * G;
    gemm(be, true, false, H, H, inner, dg, G, h_in.data(), H, false, g.dw_hh, H);
    gemm(be, true, false, H, H, E, d_forget.data(), H, h_edge.data(), H, false, g.dw_hh + H * H, H);
    gemm(be, true, false, 2 * H, H, inner, dg + 2 * H, G, h_in.data(), H, false,
         g.dw_hh + 2 * H * H, H);
    if (g.db_hh) column_sums(be, dgx.data(), n, G, g.db_hh);  // b_hh enters where b_ih does
  } else {
    gemm(be, true, false, gh_width, in_width, inner, dgh.data() + r_inner * gh_width, gh_width,
         h_in.data(), in_width, false, g.dw_hh, in_width);
    if (g.db_hh) column_sums(be, dgh.data(), n, gh_width, g.db_hh);
  }

  // The x side, in node order.
  auto dgx_nodes = be.template alloc<T>(n * G);
  be.each(n * G, RowsToNodes<T, T>{dgx_nodes.data(), dgx.data(), order, G});
  gemm(be, false, false, n, I, G, dgx_nodes.data(), G, a.w_ih, I, false, g.dx, I);
  gemm(be, true, false, G, I, n, dgx_nodes.data(), G, a.x, I, false, g.dw_ih, I);
  if (g.db_ih) column_sums(be, dgx.data(), n, G, g.db_ih);
}

}  // namespace gpu
}  // namespace fastrnn
