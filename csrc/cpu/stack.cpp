// The layer stack (see stack.h): packing, directions, dropout, unpacking. All data between layers
// is packed in forward step order: row offset[t] + k is step t of the k-th longest sequence. The
// reverse direction reads its input through `reversed` (an involution of the rows) and its
// output goes back the same way.
#include "stack.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <random>
#include <thread>
#include <vector>

#include "../packing.h"
#include "blas.h"
#include "threads.h"

namespace fastrnn {
namespace {

// dst row r (+)= src row from[r] (r when from is null), `cols` values; ld: row strides.
template <typename T>
void gather_rows(T* dst, long dst_ld, const T* src, long src_ld, long rows, long cols,
                 const long* from, bool add = false) {
  parallel_for(rows, cols, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* s = src + (from ? from[r] : r) * src_ld;
      T* d = dst + r * dst_ld;
      if (add) {
        for (long j = 0; j < cols; ++j) d[j] += s[j];
      } else {
        std::memcpy(d, s, cols * sizeof(T));
      }
    }
  });
}

// dst row to[r] = src row r.
template <typename T>
void scatter_rows(T* dst, long dst_ld, const T* src, long src_ld, long rows, long cols,
                  const long* to) {
  parallel_for(rows, cols, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r)
      std::memcpy(dst + to[r] * dst_ld, src + r * src_ld, cols * sizeof(T));
  });
}

// body(d) for each direction; two directions on two threads, each with half of the threads,
// when there are two threads to use. With one thread each they run as the two threads of one
// OpenMP region: an idle worker of the OpenMP pool spins for milliseconds after its last region,
// which beside a thread of our own takes half the machine from the two directions (a 2-layer
// bidirectional LSTM, B = 16, H = 256: 1.35x slower so on two CPUs).
template <typename Body>
void for_each_direction(long directions, Body&& body) {
  const int threads = get_num_threads();
  if (directions == 1 || threads < 2) {
    for (long d = 0; d < directions; ++d) body(d);
    return;
  }
  const int share = threads / 2;
  std::exception_ptr errors[2];
  const auto run = [&](int d, int n) {
    ThreadShare scope(n);
    try {
      body(d);
    } catch (...) {
      errors[d] = std::current_exception();
    }
  };
  if (threads < 4) {
    int ran = 0;
#pragma omp parallel num_threads(2) reduction(+ : ran)
    {
      const int d = omp_get_thread_num();
      if (omp_get_num_threads() == 2) {
        run(d, 1);
        ran = 1;
      }
    }
    if (ran < 2)  // the runtime gave one thread (inside another region): one after the other
      for (int d = 0; d < 2; ++d) run(d, 1);
  } else {
    std::thread reverse([&] { run(1, threads - share); });
    run(0, share);
    reverse.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

// One layer in one direction: its arguments and, in training, what its backward reads.
template <typename T>
struct Direction {
  LayerForward<T> fwd;                   // points into the buffers below and the caller's weights
  std::vector<T> x_reversed;             // reverse direction: the layer input, reversed
  std::vector<T> y, saved, h0, c0, h_n, c_n;  // in this direction's step order, sorted batch
};

template <typename T>
struct StackState {
  StackForward<T> args;                // sizes and options; its pointers are not used again
  Packing pack;
  std::vector<std::vector<T>> inputs;  // (layers,) packed layer inputs (layer 0's when not plain)
  std::vector<std::vector<T>> masks;   // (layers,) dropout mask on layer l's input; empty: none
  std::vector<Direction<T>> dirs;      // (layers*directions,)
};

template <typename T>
std::shared_ptr<StackState<T>> stack_forward(const StackForward<T>& a) {
  auto st = std::make_shared<StackState<T>>();
  st->args = a;
  st->pack = make_packing(a.steps, a.batch, a.lengths);
  const Packing& p = st->pack;
  const long D = a.directions, B = a.batch, H = a.hidden, S = a.proj > 0 ? a.proj : H;
  const long rows = p.rows();
  const bool lstm = a.cell == CellKind::lstm;
  st->inputs.resize(a.layers);
  st->masks.resize(a.layers);
  st->dirs.resize(a.layers * D);
  std::mt19937_64 rng(a.seed);

  const T* in = a.x;  // the layer's packed input: (rows, in_cols)
  if (!p.plain) {
    st->inputs[0].resize(rows * a.input);
    gather_rows(st->inputs[0].data(), a.input, a.x, a.input, rows, a.input, p.padded.data());
    in = st->inputs[0].data();
  }
  long in_cols = a.input;
  std::memset(a.y, 0, a.steps * B * D * S * sizeof(T));

  for (long l = 0; l < a.layers; ++l) {
    for_each_direction(D, [&](long d) {
      const long k = l * D + d;
      Direction<T>& dir = st->dirs[k];
      const DirectionWeights<T>& w = a.weights[k];
      LayerForward<T>& f = dir.fwd;
      f = LayerForward<T>{};
      f.cell = a.cell;
      f.steps = a.steps;
      f.batch = B;
      f.input = in_cols;
      f.hidden = H;
      f.proj = a.proj;
      f.batch_sizes = p.batch_sizes.data();
      f.x = in;
      if (d == 1) {
        dir.x_reversed.resize(rows * in_cols);
        gather_rows(dir.x_reversed.data(), in_cols, in, in_cols, rows, in_cols, p.reversed.data());
        f.x = dir.x_reversed.data();
      }
      if (a.h0) {
        dir.h0.resize(B * S);
        gather_rows(dir.h0.data(), S, a.h0 + k * B * S, S, B, S, p.order.data());
        f.h0 = dir.h0.data();
      }
      if (a.c0) {
        dir.c0.resize(B * H);
        gather_rows(dir.c0.data(), H, a.c0 + k * B * H, H, B, H, p.order.data());
        f.c0 = dir.c0.data();
      }
      f.w_ih = w.w_ih;
      f.w_hh = w.w_hh;
      f.b_ih = w.b_ih;
      f.b_hh = w.b_hh;
      f.w_hr = w.w_hr;
      dir.y.resize(rows * S);
      dir.h_n.resize(B * S);
      f.y = dir.y.data();
      f.h_n = dir.h_n.data();
      if (lstm) {
        dir.c_n.resize(B * H);
        f.c_n = dir.c_n.data();
      }
      const long saved_cols = saved_columns(a.cell, H, a.proj);
      if (a.training && saved_cols > 0) {
        dir.saved.resize(rows * saved_cols);
        f.saved = dir.saved.data();
      }
      layer_forward<T>(f);
      scatter_rows(a.h_n + k * B * S, S, dir.h_n.data(), S, B, S, p.order.data());
      if (lstm) scatter_rows(a.c_n + k * B * H, H, dir.c_n.data(), H, B, H, p.order.data());
    });

    // The layer's output: the directions side by side, in forward step order.
    std::vector<T> out(rows * D * S);
    for (long d = 0; d < D; ++d)
      gather_rows(out.data() + d * S, D * S, st->dirs[l * D + d].y.data(), S, rows, S,
                  d == 1 ? p.reversed.data() : nullptr);
    if (l + 1 == a.layers) {
      scatter_rows(a.y, D * S, out.data(), D * S, rows, D * S, p.padded.data());
    } else {
      if (a.training && a.dropout > 0) {
        st->masks[l + 1] = dropout_mask<T>(rows * D * S, a.dropout, rng);
        const T* mask = st->masks[l + 1].data();
        for (long i = 0; i < rows * D * S; ++i) out[i] *= mask[i];
      }
      st->inputs[l + 1] = std::move(out);
      in = st->inputs[l + 1].data();
      in_cols = D * S;
    }
    if (!a.training) {  // free what no later layer reads
      std::vector<T>().swap(st->inputs[l]);
      for (long d = 0; d < D; ++d) st->dirs[l * D + d] = Direction<T>{};
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

template <typename T>
void stack_backward(const StackState<T>& st, const StackBackward<T>& g) {
  const StackForward<T>& a = st.args;
  const Packing& p = st.pack;
  const long D = a.directions, B = a.batch, H = a.hidden, S = a.proj > 0 ? a.proj : H;
  const long rows = p.rows();
  const bool lstm = a.cell == CellKind::lstm;

  // d of the layer's output, packed in forward step order: (rows, D*S).
  std::vector<T> dout(rows * D * S, T(0));
  if (g.dy) gather_rows(dout.data(), D * S, g.dy, D * S, rows, D * S, p.padded.data());

  for (long l = a.layers - 1; l >= 0; --l) {
    const long in_cols = l == 0 ? a.input : D * S;
    std::vector<T> din(rows * in_cols), din_reversed;  // d of the layer's input
    if (D == 2) din_reversed.resize(rows * in_cols);
    for_each_direction(D, [&](long d) {
      const long k = l * D + d;
      const Direction<T>& dir = st.dirs[k];
      std::vector<T> dy(rows * S), dh_n, dc_n, dh0(B * S), dc0;
      gather_rows(dy.data(), S, dout.data() + d * S, D * S, rows, S,
                  d == 1 ? p.reversed.data() : nullptr);
      LayerBackward<T> b{};
      b.fwd = &dir.fwd;
      b.dy = dy.data();
      if (g.dh_n) {
        dh_n.resize(B * S);
        gather_rows(dh_n.data(), S, g.dh_n + k * B * S, S, B, S, p.order.data());
        b.dh_n = dh_n.data();
      }
      if (g.dc_n) {
        dc_n.resize(B * H);
        gather_rows(dc_n.data(), H, g.dc_n + k * B * H, H, B, H, p.order.data());
        b.dc_n = dc_n.data();
      }
      b.dx = d == 0 ? din.data() : din_reversed.data();
      b.dh0 = dh0.data();
      if (lstm) {
        dc0.resize(B * H);
        b.dc0 = dc0.data();
      }
      const DirectionGrads<T>& w = g.grads[k];
      b.dw_ih = w.dw_ih;
      b.dw_hh = w.dw_hh;
      b.db_ih = w.db_ih;
      b.db_hh = w.db_hh;
      b.dw_hr = w.dw_hr;
      layer_backward<T>(b);
      scatter_rows(g.dh0 + k * B * S, S, dh0.data(), S, B, S, p.order.data());
      if (lstm) scatter_rows(g.dc0 + k * B * H, H, dc0.data(), H, B, H, p.order.data());
    });
    if (D == 2)
      gather_rows(din.data(), in_cols, din_reversed.data(), in_cols, rows, in_cols,
                  p.reversed.data(), true);
    if (!st.masks[l].empty()) {
      const T* mask = st.masks[l].data();
      for (long i = 0; i < rows * in_cols; ++i) din[i] *= mask[i];
    }
    dout = std::move(din);
  }
  std::memset(g.dx, 0, a.steps * B * a.input * sizeof(T));
  scatter_rows(g.dx, a.input, dout.data(), a.input, rows, a.input, p.padded.data());
}

template std::shared_ptr<StackState<float>> stack_forward<float>(const StackForward<float>&);
template std::shared_ptr<StackState<double>> stack_forward<double>(const StackForward<double>&);
template void stack_backward<float>(const StackState<float>&, const StackBackward<float>&);
template void stack_backward<double>(const StackState<double>&, const StackBackward<double>&);

}  // namespace fastrnn
