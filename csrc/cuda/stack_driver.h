// The layers and directions of a whole network on a device (see stack.h), written once over a
// Backend like driver.h's, with two more calls:
//   be.upload(dst, src, n)   n values from host memory to a buffer of alloc
//   be.layer_forward(f), be.layer_backward(g)   one layer in one direction (driver.h)
// The packing and the dropout masks are csrc/packing.h's, shared with the CPU stack. All data
// between layers is packed in forward step order (row offset[t] + k: step t of the k-th longest
// sequence). Unlike the CPU stack, the reverse direction needs no reversed copy of its input: the
// layer driver runs each sequence backwards itself, and its output is in forward step order.
#pragma once

#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "../packing.h"
#include "rows.cuh"
#include "stack.h"

namespace fastrnn {
namespace gpu {

template <typename B, typename U>
using BufferOf = decltype(std::declval<B&>().template alloc<U>(0));

// One layer in one direction: its arguments and, in training, what its backward reads.
template <typename B, typename T, typename A>
struct StackDirection {
  LayerForward<T, A> fwd{};                // points into the buffers below and the caller's weights
  BufferOf<B, T> y, h0, c0, h_n, c_n;     // in packed (sorted) batch order
  BufferOf<B, A> saved;
};

template <typename B, typename T, typename A>
struct StackState {
  StackForward<T> args;                   // sizes and options; its pointers are not used again
  Packing pack;                           // host maps; batch_sizes is read by the layers
  BufferOf<B, long> padded, order;        // device copies of pack's maps
  std::vector<BufferOf<B, T>> inputs;     // (layers,) packed layer inputs (layer 0's when not plain)
  std::vector<BufferOf<B, A>> masks;      // (layers,) dropout mask on layer l's input
  std::vector<bool> masked;               // (layers,) whether masks[l] is there
  std::vector<StackDirection<B, T, A>> dirs;  // (layers*directions,)
};

template <typename B, typename U>
BufferOf<B, U> upload(B& be, const std::vector<U>& host) {
  auto buf = be.template alloc<U>(static_cast<long>(host.size()));
  be.upload(buf.data(), host.data(), static_cast<long>(host.size()));
  return buf;
}

template <typename B, typename T, typename A>
std::unique_ptr<StackState<B, T, A>> run_stack_forward(B& be, const StackForward<T>& a) {
  auto st = std::make_unique<StackState<B, T, A>>();
  st->args = a;
  st->pack = make_packing(a.steps, a.batch, a.lengths);
  const Packing& p = st->pack;
  const long D = a.directions, N = a.batch, H = a.hidden, S = a.proj > 0 ? a.proj : H;
  const long rows = p.rows(), out_cols = D * S;
  const bool lstm = a.cell == CellKind::lstm;
  st->padded = upload(be, p.padded);
  st->order = upload(be, p.order);
  const long *padded = st->padded.data(), *order = st->order.data();
  st->inputs.resize(a.layers);
  st->masks.resize(a.layers);
  st->masked.assign(a.layers, false);
  st->dirs.resize(a.layers * D);
  // Every mask at once, in the CPU stack's order (one upload, before any layer runs): a copy from
  // pageable memory waits for the stream.
  if (a.training && a.dropout > 0) {
    std::mt19937_64 rng(a.seed);
    for (long l = 1; l < a.layers; ++l) {
      st->masks[l] = upload(be, dropout_mask<A>(rows * out_cols, a.dropout, rng));
      st->masked[l] = true;
    }
  }

  const T* in = a.x;  // the layer's packed input: (rows, in_cols)
  if (!p.plain) {
    st->inputs[0] = be.template alloc<T>(rows * a.input);
    be.each(rows * a.input, GatherRows<T>{st->inputs[0].data(), a.input, a.x, a.input, a.input, padded});
    in = st->inputs[0].data();
  }
  long in_cols = a.input;

  for (long l = 0; l < a.layers; ++l) {
    for (long d = 0; d < D; ++d) {
      const long k = l * D + d;
      StackDirection<B, T, A>& dir = st->dirs[k];
      const DirectionWeights<T>& w = a.weights[k];
      LayerForward<T, A>& f = dir.fwd;
      f.cell = a.cell;
      f.steps = a.steps;
      f.batch = N;
      f.input = in_cols;
      f.hidden = H;
      f.proj = a.proj;
      f.batch_sizes = p.batch_sizes.data();
      f.reverse = d == 1;
      f.x = in;
      if (a.h0) {
        dir.h0 = be.template alloc<T>(N * S);
        be.each(N * S, GatherRows<T>{dir.h0.data(), S, a.h0 + k * N * S, S, S, order});
        f.h0 = dir.h0.data();
      }
      if (a.c0) {
        dir.c0 = be.template alloc<T>(N * H);
        be.each(N * H, GatherRows<T>{dir.c0.data(), H, a.c0 + k * N * H, H, H, order});
        f.c0 = dir.c0.data();
      }
      f.w_ih = w.w_ih;
      f.w_hh = w.w_hh;
      f.b_ih = w.b_ih;
      f.b_hh = w.b_hh;
      f.w_hr = w.w_hr;
      dir.y = be.template alloc<T>(rows * S);
      dir.h_n = be.template alloc<T>(N * S);
      f.y = dir.y.data();
      f.h_n = dir.h_n.data();
      if (lstm) {
        dir.c_n = be.template alloc<T>(N * H);
        f.c_n = dir.c_n.data();
      }
      const long saved_cols = saved_columns(a.cell, H, a.proj);
      if (a.training && saved_cols > 0) {
        dir.saved = be.template alloc<A>(rows * saved_cols);
        f.saved = dir.saved.data();
      }
      be.layer_forward(f);
      be.each(N * S, ScatterRows<T>{a.h_n + k * N * S, S, dir.h_n.data(), S, S, order});
      if (lstm) be.each(N * H, ScatterRows<T>{a.c_n + k * N * H, H, dir.c_n.data(), H, H, order});
    }

    // The layer's output: the directions side by side, (rows, D*S).
    auto out = be.template alloc<T>(rows * out_cols);
    for (long d = 0; d < D; ++d)
      be.each(rows * S, GatherRows<T>{out.data() + d * S, out_cols, st->dirs[l * D + d].y.data(), S, S, nullptr});
    if (l + 1 == a.layers) {
      if (!p.plain) be.each(a.steps * N * out_cols, CopyOrZero<T, T>{a.y, nullptr});
      be.each(rows * out_cols, ScatterRows<T>{a.y, out_cols, out.data(), out_cols, out_cols, padded});
    } else {
      if (st->masked[l + 1])
        be.each(rows * out_cols, ScaleBy<T, A>{out.data(), st->masks[l + 1].data()});
      st->inputs[l + 1] = std::move(out);
      in = st->inputs[l + 1].data();
      in_cols = out_cols;
    }
    if (!a.training) {  // free what no later layer reads
      st->inputs[l] = BufferOf<B, T>{};
      for (long d = 0; d < D; ++d) st->dirs[l * D + d] = StackDirection<B, T, A>{};
    }
  }
  if (!a.training) return nullptr;
  st->args.x = nullptr;
  st->args.h0 = st->args.c0 = nullptr;
  st->args.weights = nullptr;
  st->args.y = st->args.h_n = st->args.c_n = nullptr;
  st->args.lengths = nullptr;
  return st;
}

template <typename B, typename T, typename A>
void run_stack_backward(B& be, const StackState<B, T, A>& st, const StackBackward<T, A>& g) {
  const StackForward<T>& a = st.args;
  const Packing& p = st.pack;
  const long D = a.directions, N = a.batch, H = a.hidden, S = a.proj > 0 ? a.proj : H;
  const long rows = p.rows(), out_cols = D * S;
  const bool lstm = a.cell == CellKind::lstm;
  const long *padded = st.padded.data(), *order = st.order.data();

  // d of the layer's output, packed: (rows, D*S).
  auto dout = be.template alloc<T>(rows * out_cols);
  if (g.dy)
    be.each(rows * out_cols, GatherRows<T>{dout.data(), out_cols, g.dy, out_cols, out_cols, padded});
  else
    be.each(rows * out_cols, CopyOrZero<T, T>{dout.data(), nullptr});

  for (long l = a.layers - 1; l >= 0; --l) {
    const long in_cols = l == 0 ? a.input : out_cols;
    auto din = be.template alloc<T>(rows * in_cols);  // d of the layer's input
    auto din_reverse = be.template alloc<T>(D == 2 ? rows * in_cols : 0);
    for (long d = 0; d < D; ++d) {
      const long k = l * D + d;
      const StackDirection<B, T, A>& dir = st.dirs[k];
      auto dy = be.template alloc<T>(rows * S);
      be.each(rows * S, GatherRows<T>{dy.data(), S, dout.data() + d * S, out_cols, S, nullptr});
      auto dh_n = be.template alloc<T>(g.dh_n ? N * S : 0);
      auto dc_n = be.template alloc<T>(g.dc_n ? N * H : 0);
      auto dh0 = be.template alloc<T>(N * S);
      auto dc0 = be.template alloc<T>(lstm ? N * H : 0);
      LayerBackward<T, A> b{};
      b.fwd = &dir.fwd;
      b.dy = dy.data();
      if (g.dh_n) {
        be.each(N * S, GatherRows<T>{dh_n.data(), S, g.dh_n + k * N * S, S, S, order});
        b.dh_n = dh_n.data();
      }
      if (g.dc_n) {
        be.each(N * H, GatherRows<T>{dc_n.data(), H, g.dc_n + k * N * H, H, H, order});
        b.dc_n = dc_n.data();
      }
      b.dx = d == 0 ? din.data() : din_reverse.data();
      b.dh0 = dh0.data();
      b.dc0 = lstm ? dc0.data() : nullptr;
      const DirectionGrads<A>& w = g.grads[k];
      b.dw_ih = w.dw_ih;
      b.dw_hh = w.dw_hh;
      b.db_ih = w.db_ih;
      b.db_hh = w.db_hh;
      b.dw_hr = w.dw_hr;
      be.layer_backward(b);
      be.each(N * S, ScatterRows<T>{g.dh0 + k * N * S, S, dh0.data(), S, S, order});
      if (lstm) be.each(N * H, ScatterRows<T>{g.dc0 + k * N * H, H, dc0.data(), H, H, order});
    }
    if (D == 2) be.each(rows * in_cols, AddTo<T, A>{din.data(), din_reverse.data()});
    if (st.masked[l]) be.each(rows * in_cols, ScaleBy<T, A>{din.data(), st.masks[l].data()});
    dout = std::move(din);
  }
  if (!p.plain) be.each(a.steps * N * a.input, CopyOrZero<T, T>{g.dx, nullptr});
  be.each(rows * a.input, ScatterRows<T>{g.dx, a.input, dout.data(), a.input, a.input, padded});
}

}  // namespace gpu
}  // namespace fastrnn
