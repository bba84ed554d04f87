// The time loop of one layer in one direction (see sequence.h), compiled once per instruction
// set.
//
// Threads split the hidden units in whole SIMD vectors; each thread owns its units' columns of
// every buffer. Forward: each thread computes its units' input projection for many steps, then
// per step the recurrent product of its units' gates with the register-blocked panel (panel.h)
// and, on the gates still in registers, the cell's pointwise math (csrc/cells); one barrier per
// step, since the next step reads every unit of h. A step too small to split runs on one thread,
// with the input projection on a second one, ahead of it (Pipeline).
// Backward: per step in reverse, the pointwise backward of its units, a barrier, then its units'
// part of W_hh^T d(gates); then, on every thread, the weight gradients and dx as BLAS GEMMs over
// all steps.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include <unistd.h>

#include "../cells/gru.h"
#include "../cells/lstm.h"
#include "../cells/rnn.h"
#include "blas.h"
#include "buffer.h"
#include "pack_cache.h"
#include "isa.h"
#include "panel.h"
#include "sequence.h"
#include "threads.h"
#include "units.h"

namespace fastrnn {
namespace FASTRNN_ISA {
namespace {

// Step t's rows in the packed layout.
struct Steps {
  std::vector<long> offset, size;  // (steps + 1,), (steps,)
  long rows() const { return offset.back(); }
};

Steps make_steps(long steps, long batch, const long* batch_sizes) {
  Steps s;
  s.offset.assign(steps + 1, 0);
  s.size.assign(steps, batch);
  for (long t = 0; t < steps; ++t) {
    if (batch_sizes) s.size[t] = batch_sizes[t];
    s.offset[t + 1] = s.offset[t] + s.size[t];
  }
  return s;
}

// Threads worth using: per-step work below 16k flops is faster on one thread than split with a
// barrier per step.
int threads_for(long step_flops, long hidden) {
  const long blocks = (hidden + Vec<float>::width - 1) / Vec<float>::width;
  if (step_flops < (1L << 14)) return 1;
  return int(std::min<long>(get_num_threads(), blocks));
}

// w (G*H, K) repacked for the forward panel: per block of `width` units, [k][gate][unit], units
// past H zero; blocks [first, last) into `out` (blocks * K * G * width values). Each output row of
// `width` lanes is written whole from `width` rows of w read in step (their current cache lines
// stay in L1). Each thread packs the blocks it owns, into its own core's cache.
template <typename T>
void pack_gate_blocks(T* out, const T* w, long G, long H, long K, long width, long first, long last) {
  for (long blk = first; blk < last; ++blk) {
    const long lanes = std::min(width, H - blk * width);
    for (long g = 0; g < G; ++g) {
      const T* src = w + (g * H + blk * width) * K;
      T* dst = out + blk * K * G * width + g * width;
      for (long k = 0; k < K; ++k) {
        T* d = dst + k * G * width;
        for (long lane = 0; lane < lanes; ++lane) d[lane] = src[lane * K + k];
        for (long lane = lanes; lane < width; ++lane) d[lane] = T(0);
      }
    }
  }
}

// Vectors of units each panel covers. With one or two batch rows a panel has too few
// accumulators to hide the FMA latency and share each broadcast of h; covering NB neighbouring
// vectors of units at once fixes both.
template <CellKind cell>
constexpr int wide_blocks() {
  return cell == CellKind::rnn_tanh || cell == CellKind::rnn_relu ? 4 : 2;
}
inline bool narrow_batch(long rows) { return rows <= 2; }

// Batch 1 with 32 vector registers: a step's recurrent panel waits on W_hh streaming from L2
// with its FMA units idle half the time, so the input projection of later steps rides along in
// the same pass over k (panel_pair), instead of running up front: jobs of RX rows x all gates x
// one vector of units, in row order, at most one group of RX rows ahead of the step. They add
// 1/RX of W_ih's bytes per step to what streams from L2. RX = 4 (measured: for the LSTM, 4 rows
// of all gates beat 8 of half the gates, and 2; for the Elman RNN, whose steps are one panel of
// four vectors at H = 64, 4 rows give every step a job where 8 gave every other one: RNN T=1000
// H=64 forward 8% faster than with 8, 2 rows 25% slower).
// Split over threads, a thread whose share of W_hh fits in L1 has no L2 stream to hide the jobs
// in, and each job lengthens the step that every thread waits for at the barrier: there the
// projection runs up front (RNN B = 1, H = I = 128, two threads, 32 KB a thread: the forward 6%
// faster; the LSTM's 128 KB shares and the GRU's 96 KB keep the jobs, 5-7% faster with them).
constexpr int kAheadRows = 4;

// Bytes of L1 data cache per core (32 KB where the system does not say).
long l1_bytes() {
  static const long bytes = [] {
#ifdef _SC_LEVEL1_DCACHE_SIZE  // glibc's
    const long b = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#else
    const long b = 0;
#endif
    return b > 0 ? b : 32768L;
  }();
  return bytes;
}

// w (rows, cols) with each row padded with zeros to cols_pad.
template <typename T>
Buffer<T> pad_columns(const T* w, long rows, long cols, long cols_pad) {
  Buffer<T> out(rows * cols_pad);
  for (long r = 0; r < rows; ++r) std::memcpy(out.data() + r * cols_pad, w + r * cols, cols * sizeof(T));
  return out;
}

// Steps whose input projection is computed together in inference mode: enough rows for a good
// GEMM, a bounded buffer (O(batch * hidden)).
long chunk_steps(const Steps& s, long steps) {
  const long batch = steps ? std::max<long>(1, s.size[0]) : 1;
  return std::clamp<long>(256 / batch, 1, std::max<long>(steps, 1));
}

// Step flops below which, with two threads, the pipeline below measures at least as fast as
// splitting the units (the GRU at H = 64, 24.6k flops, 9% faster; 32.8k flops even).
constexpr long kPipelineFlops = 1L << 15;

// A recurrence too small to split among threads (under kPipelineFlops a step, where a barrier
// per step costs about what splitting saves) still has a second thread's worth of work: the input
// projection, which no step waits on but its own. One thread computes it `chunk_steps` steps at a
// time, ahead of the thread running the steps: `produced` counts the packed rows of gates it has
// written; `consumed` the rows the steps are done with, where `gates` is a ring it must not
// overrun (inference).
struct Pipeline {
  long chunk_steps;
  alignas(64) std::atomic<long> produced{0};
  alignas(64) std::atomic<long> consumed{0};
};

// Everything the threads share to run the forward of one cell kind.
template <typename T>
struct Forward {
  const LayerForward<T>& a;
  const Steps& s;
  long H, I, O;            // hidden, input, output (= hidden, or the LSTM's projection)
  long ld;                 // row stride of the gates buffer
  T* gates;                // x-side pre-activations (then saved values), by packed row
  bool chunked;            // `gates` holds only the current chunk's rows (inference)
  long chunk;              // steps per input-projection chunk
  T* w_packed;             // W_hh in panel blocks (each thread packs its own)
  T* w_ih_packed;          // W_ih in panel blocks: of the step's width when fused, else of W units
  bool fused;              // the input projection runs in the step's panel
  bool ahead;              // batch 1: later steps' input projection rides in the step's panels
  Pipeline* pipeline;      // or a thread of its own runs it ahead of the steps (else null)
  long ring;               // inference with `ahead` or `pipeline`: rows of `gates`, used round
                           // robin (else 0)
  bool pack_hh, pack_ih;   // the threads pack W_hh, W_ih (else a kept packing from pack_cache.h)
  const T* bias_x;         // (G*H,) added to the input projection, or null
  const T* h0;             // (B, O), zeros when the caller gave none
  // LSTM projection: o*tanh(c) of every row (training: a column block of `gates`; inference:
  // a (B, H) buffer) and W_hr^T padded to whole vectors (H, o_pad).
  T* h_full;
  long ld_full;
  const T* w_hr_t;
  long o_pad;

  long gate_row(long row, long base) const { return ring ? row % ring : row - base; }
};

// y[row, p] and h_n for this thread's share `outs` of the projection, rows [0, bt) of step t.
template <typename T>
void project_step(const Forward<T>& f, long t, long bt, Range outs) {
  constexpr long W = Vec<T>::width;
  const long base = f.chunked ? 0 : f.s.offset[t];  // row of h_full holding batch row 0
  for (long u = outs.begin; u < outs.end; u += W) {
    const long n = std::min(W, outs.end - u);
    for_each_panel<T, 1, panel_rows<1>()>(bt, f.h_full + base * f.ld_full, f.ld_full, f.w_hr_t + u,
                                          f.o_pad, f.H, [&](const auto& acc, long rb) {
      for (int r = 0; r < acc.rows; ++r) {
        const long b = rb + r;
        store_n(f.a.y + (f.s.offset[t] + b) * f.O + u, acc.v[r][0], n);
        store_n(f.a.h_n + b * f.O + u, acc.v[r][0], n);
      }
    });
  }
}

// A panel of the input projection (rows from `row`, all G gates of the vector of units at u0,
// of which n are real) plus the bias, into the gates buffer.
template <typename T, int G, typename Acc>
void store_projection(const Forward<T>& f, const Acc& acc, long row, long u0, long n, long base) {
  using V = Vec<T>;
  for (int r = 0; r < acc.rows; ++r)
    for (int g = 0; g < G; ++g) {
      const long col = g * f.H + u0;
      const V b = f.bias_x ? load_n(f.bias_x + col, n) : V(T(0));
      store_n(f.gates + f.gate_row(row + r, base) * f.ld + col, acc.v[r][g] + b, n);
    }
}

// The input projection of packed rows r0 .. r0 + rows for `units`, with the panel (for these
// shapes, few rows and K = I, it runs at 2x the BLAS's GEMM), W_ih packed per vector of units.
template <typename T, int G>
void project_rows(const Forward<T>& f, long r0, long rows, Range units, long base) {
  constexpr long W = Vec<T>::width;
  for (long u0 = units.begin; u0 < units.end; u0 += W)
    for_each_panel<T, G, panel_rows<G>()>(rows, f.a.x + r0 * f.I, f.I, f.w_ih_packed + (u0 / W) * f.I * G * W,
                                          G * W, f.I, [&](const auto& pa, long rb) {
      store_projection<T, G>(f, pa, r0 + rb, u0, std::min(W, units.end - u0), base);
    });
}

// The pipeline's projecting thread: every row, chunk by chunk, ahead of the steps.
template <typename T, CellKind cell>
void project_ahead(const Forward<T>& f) {
  constexpr long W = Vec<T>::width;
  constexpr int G = gate_count(cell);
  Pipeline& pl = *f.pipeline;
  if (f.pack_ih) pack_gate_blocks(f.w_ih_packed, f.a.w_ih, G, f.H, f.I, W, 0, (f.H + W - 1) / W);
  for (long t0 = 0; t0 < f.a.steps; t0 += pl.chunk_steps) {
    const long r0 = f.s.offset[t0], r1 = f.s.offset[std::min(t0 + pl.chunk_steps, f.a.steps)];
    if (f.ring) wait_for(pl.consumed, r1 - f.ring);  // the ring's rows it overwrites are read
    project_rows<T, G>(f, r0, r1 - r0, Range{0, f.H}, 0);
    pl.produced.store(r1, std::memory_order_release);
  }
}

template <typename T, CellKind cell, int NB>
void forward_thread(const Forward<T>& f, int p, int parts) {
  constexpr long W = Vec<T>::width, BW = NB * W;
  constexpr int G = gate_count(cell);
  [[maybe_unused]] constexpr Activation act = cell == CellKind::rnn_relu ? Activation::relu : Activation::tanh;
  using V = Vec<T>;
  const LayerForward<T>& a = f.a;
  const Steps& s = f.s;
  const long H = f.H, I = f.I, O = f.O;
  const bool projected = a.proj > 0;
  const Range units = share(H, p, parts, BW);
  const Range outs = share(O, p, parts, W);
  const bool training = a.saved != nullptr;
  const long first = units.begin / BW, last = (units.end + BW - 1) / BW;
  if (f.pack_hh) pack_gate_blocks(f.w_packed, a.w_hh, G, H, O, BW, first, last);
  const long x_width = f.fused ? BW : W;  // units per block of the packed W_ih
  if (f.pack_ih && !f.pipeline)
    pack_gate_blocks(f.w_ih_packed, a.w_ih, G, H, I, x_width, units.begin / x_width,
                     (units.end + x_width - 1) / x_width);

  const long n_blocks = (units.end - units.begin + BW - 1) / BW;
  std::vector<T> h_rev(NB > 1 ? 2 * O : 0);  // h_{t-1} of the (at most two) rows, reversed

  // With `ahead` (one chunk): the input projection's jobs, job j covering the rows of group
  // j / per_group and vector j % per_group of this thread's units.
  constexpr int RX = kAheadRows;
  const long per_group = (units.end - units.begin + W - 1) / W, n_rows = s.rows();
  const long n_jobs = f.ahead ? (n_rows + RX - 1) / RX * per_group : 0;
  long next_job = 0;
  std::vector<T> x_group(f.ahead ? RX * I : 0);  // the rows of next_job's group, transposed
  long x_group_row = -1;                          // its first row
  struct Job {
    Operand<T> op;  // its rows of x against its vector's W_ih
    long row0, u0;
  };
  const auto job = [&](long j) {
    const long row0 = j / per_group * RX, u0 = units.begin + j % per_group * W;
    return Job{{a.x + row0 * I, I, f.w_ih_packed + (u0 / W) * I * G * W, G * W, I}, row0, u0};
  };
  const auto store_x = [&](const auto& acc, long row, long u0, long base) {
    store_projection<T, G>(f, acc, row, u0, std::min(W, units.end - u0), base);
  };
  const auto run_job = [&](long j) {  // on its own
    const Job jb = job(j);
    Operand<T> none = jb.op;
    none.K = 0;
    for_each_panel<T, G, RX>(std::min<long>(RX, n_rows - jb.row0), jb.op, none,
                             [&](const auto& acc, long rb) { store_x(acc, jb.row0 + rb, jb.u0, 0); });
  };

  for (long t0 = 0; t0 < a.steps; t0 += f.chunk) {
    const long t1 = std::min(t0 + f.chunk, a.steps);
    const long r0 = s.offset[t0], rows = s.offset[t1] - r0;
    const long base = f.chunked ? r0 : 0;  // packed row held in gates' first row
    // Input projection of this thread's units for the chunk, unless the step's panel or the
    // pipeline does it.
    if (!f.fused && !f.ahead && !f.pipeline) project_rows<T, G>(f, r0, rows, units, base);
    for (long t = t0; t < t1; ++t) {
      const long bt = s.size[t];
      if (f.pipeline) wait_for(f.pipeline->produced, s.offset[t + 1]);
      const T* h_prev = t == 0 ? f.h0 : a.y + s.offset[t - 1] * O;
      // `ahead`: the groups holding this step's rows are complete before its panels read them;
      // the panels may then run the jobs of the next group.
      const long next_group = (s.offset[t + 1] - 1) / RX + 1;
      while (next_job < n_jobs && next_job / per_group < next_group) run_job(next_job++);
      // With one or two batch rows, every other step reads this thread's share of W_hh backwards
      // (blocks, and k within them against h_{t-1} reversed): what the previous step read last is
      // still in L1 and is read first.
      const bool back = NB > 1 && t % 2;
      if (back)
        for (long b = 0; b < bt; ++b) std::reverse_copy(h_prev + b * O, h_prev + (b + 1) * O, h_rev.data() + b * O);
      for (long j = 0; j < n_blocks; ++j) {
        const long u0 = units.begin + (back ? n_blocks - 1 - j : j) * BW;
        const T* w = f.w_packed + (u0 / BW) * O * G * BW;
        // With the input projection fused, x_t W_ih^T is the panel's first operand.
        const Operand<T> xw{a.x + s.offset[t] * I, I, f.w_ih_packed + (u0 / BW) * I * G * BW, G * BW,
                            f.fused ? I : 0};
        const Operand<T> hw = back ? Operand<T>{h_rev.data(), O, w + (O - 1) * G * BW, -G * BW, O}
                                   : Operand<T>{h_prev, O, w, G * BW, O};
        const auto cell_math = [&](const auto& pa, long rb) {
          for (int i = 0; i < pa.rows * NB; ++i) {  // batch row r, vector nb of the panel's units
            const int r = i / NB, nb = i % NB;
            const long u = u0 + nb * W, n = std::min(W, units.end - u);
            if (n <= 0) continue;
            const auto acc = [&](int g) { return pa.v[r][g * NB + nb]; };
            const long b = rb + r, row = s.offset[t] + b;
            T* gx = f.gates + f.gate_row(row, base) * f.ld + u;  // this row's x-side gates
            // The x side of gate g: from the projection done before, or the bias alone when
            // the panel summed it.
            const auto x_side = [&](int g) __attribute__((always_inline)) {
              if (!f.fused) return load_n(gx + g * H, n);
              return f.bias_x ? load_n(f.bias_x + g * H + u, n) : V(T(0));
            };
            T* y = a.y + row * O + u;
            T* h = a.h_n + b * O + u;
            if constexpr (G == 1) {
              const V out = rnn_forward_unit<act>(acc(0) + x_side(0));
              store_n(y, out, n);
              store_n(h, out, n);
            } else if constexpr (G == 4) {
              LstmGates<V> gv{acc(0) + x_side(0), acc(1) + x_side(1), acc(2) + x_side(2),
                              acc(3) + x_side(3)};
              T* c = a.c_n + b * H + u;
              V c_new, h_new;
              lstm_forward_unit(gv, load_n(c, n), c_new, h_new);
              store_n(c, c_new, n);
              if (projected) {
                store_n(f.h_full + (f.chunked ? b : row) * f.ld_full + u, h_new, n);
              } else {
                store_n(h, h_new, n);
                store_n(y, h_new, n);
              }
              if (training) {
                store_n(gx, gv.i, n);
                store_n(gx + H, gv.f, n);
                store_n(gx + 2 * H, gv.g, n);
                store_n(gx + 3 * H, gv.o, n);
                store_n(gx + 4 * H, c_new, n);
              }
            } else {
              const GruGates<V> x3{load_n(gx, n), load_n(gx + H, n), load_n(gx + 2 * H, n)};
              GruGates<V> h3{acc(0), acc(1), acc(2)};
              if (a.b_hh) {
                h3.r = h3.r + load_n(a.b_hh + u, n);
                h3.z = h3.z + load_n(a.b_hh + H + u, n);
                h3.n = h3.n + load_n(a.b_hh + 2 * H + u, n);
              }
              GruGates<V> av;
              const V h_new = gru_forward_unit(x3, h3, load_n(h_prev + b * H + u, n), av);
              store_n(h, h_new, n);
              store_n(y, h_new, n);
              if (training) {
                store_n(gx, av.r, n);
                store_n(gx + H, av.z, n);
                store_n(gx + 2 * H, av.n, n);
                store_n(gx + 3 * H, h3.n, n);
              }
            }
          }
        };
        // `ahead`: the next job of the group after this step's (or this step's) rides along.
        const long jg = next_job / per_group;
        if constexpr (FASTRNN_SIMD_BYTES == 64 && NB > 1) {
          if (next_job < n_jobs && bt == 1 && jg <= next_group && (jg + 1) * RX <= n_rows) {
            const Job jb = job(next_job++);
            if (x_group_row != jb.row0) {
              x_group_row = jb.row0;
              for (long r = 0; r < RX; ++r)
                for (long i = 0; i < I; ++i) x_group[i * RX + r] = jb.op.a[r * I + i];
            }
            PanelAcc<T, 1, G * NB> pa;
            PanelAcc<T, RX, G> px;
            panel_pair<T, 1, G * NB, RX, G>(hw, RowsT<T>{x_group.data(), jb.op.w, jb.op.w_stride, I}, pa, px);
            store_x(px, jb.row0, jb.u0, 0);
            cell_math(pa, 0);
            continue;
          }
        }
        for_each_panel<T, G * NB, panel_rows<G * NB>()>(bt, xw.K ? xw : hw, xw.K ? hw : xw, cell_math);
      }
      barrier(parts);  // the next step (or the projection) reads every unit
      if (f.pipeline && f.ring) f.pipeline->consumed.store(s.offset[t + 1], std::memory_order_release);
      if (projected) {
        project_step(f, t, bt, outs);
        barrier(parts);
      }
    }
  }
}

template <typename T, CellKind cell>
void forward(const LayerForward<T>& a, const Steps& s) {
  constexpr long W = Vec<T>::width;
  const long H = a.hidden, I = a.input, O = a.state(), G = gate_count(cell);
  Buffer<T> zeros;
  std::vector<T> bias;
  const T* h0 = a.h0;
  if (!h0) {
    zeros = Buffer<T>(a.batch * O);
    h0 = zeros.data();
  }
  if (a.b_ih) {  // GRU: b_hh stays inside r * (W_hn h + b_hn), added per step
    bias.assign(a.b_ih, a.b_ih + G * H);
    if (cell != CellKind::gru)
      for (long j = 0; j < G * H; ++j) bias[j] += a.b_hh[j];
  }
  const bool training = a.saved != nullptr;
  const long batch0 = a.steps ? s.size[0] : 0;
  const long step_flops = 2 * batch0 * G * H * O;
  // A recurrence on one thread, with another free: the input projection in a pipeline beside it
  // (the Elman RNN at B = 1, H = I = 64: the forward 1.4x faster), from four chunks of steps on.
  // Also in place of splitting the units below kPipelineFlops a step, where the two measure even
  // or the pipeline ahead (GRU B = 1, H = I = 64, two threads: 0.52 vs 0.56 ms).
  Pipeline pipeline;
  pipeline.chunk_steps = std::max<long>(1, 16 / std::max<long>(batch0, 1));
  const int split = threads_for(step_flops, H);
  const bool pipelined = get_num_threads() >= 2 && a.steps >= 4 * pipeline.chunk_steps &&
                         (step_flops < kPipelineFlops || split == 1);
  const int threads = pipelined ? 1 : split;
  // Where the x-side gates live: the RNN's straight in y; training: the saved buffer;
  // inference: a chunk buffer, or a ring of rows: with `ahead` two groups, with the pipeline
  // four chunks.
  const bool ahead = !pipelined && FASTRNN_SIMD_BYTES == 64 && a.steps >= 2 * kAheadRows && batch0 == 1 &&
                     (threads == 1 || G * H * O * long(sizeof(T)) > threads * l1_bytes());
  long ring = 0;
  Buffer<T> work, full_work, w_hr_t;
  long ld = G * H, chunk = std::max<long>(a.steps, 1);
  T* gates;
  if (G == 1) {
    gates = a.y;
    ld = H;
  } else if (training) {
    gates = a.saved;
    ld = saved_columns(cell, H, a.proj);
  } else if (ahead || pipelined) {
    ring = ahead ? 2 * kAheadRows : 4 * pipeline.chunk_steps * batch0;
    work = Buffer<T>(ring * G * H, false);
    gates = work.data();
  } else {
    chunk = chunk_steps(s, a.steps);
    work = Buffer<T>(std::max<long>(1, s.offset[std::min(chunk, a.steps)]) * G * H, false);
    gates = work.data();
  }
  const long o_pad = (O + W - 1) / W * W;
  T* h_full = nullptr;
  long ld_full = 0;
  if (a.proj > 0) {
    if (training) {
      h_full = a.saved + 5 * H;
      ld_full = ld;
    } else {
      full_work = Buffer<T>(a.batch * H, false);
      h_full = full_work.data();
      ld_full = H;
    }
    // W_hr (O, H) transposed to (H, o_pad).
    w_hr_t = Buffer<T>(H * o_pad);
    for (long o = 0; o < O; ++o)
      for (long j = 0; j < H; ++j) w_hr_t[j * o_pad + o] = a.w_hr[o * H + j];
  }
  constexpr int NB = wide_blocks<cell>();
  const bool wide = narrow_batch(a.steps ? s.size[0] : 0);
  const long BW = (wide ? NB : 1) * W, blocks = (H + BW - 1) / BW;
  bool kept_hh, kept_ih;
  const auto w_packed = pack_find(a.w_hh, G * H * O * sizeof(T), {G, H, O, BW, long(sizeof(T)), W},
                                  blocks * O * G * BW * sizeof(T), kept_hh);
  // From 8 batch rows on, the LSTM's and the Elman RNN's input projection runs in the step's
  // panel beside the recurrent product (x_t and h_{t-1} against W_ih and W_hh packed alike):
  // the panel runs closer to the FMA peak than the BLAS's GEMM, and the x-side gates never make
  // a round trip through memory (B = 16, H = I = 256: the LSTM's forward 9% faster). Below
  // that, one GEMM over many steps does the projection better. The GRU keeps its x side apart
  // for r * (W_hn h + b_hn).
  const bool fuse_x = !pipelined && cell != CellKind::gru && batch0 >= 8;
  const long x_width = fuse_x ? BW : W;
  const auto w_ih_packed = pack_find(a.w_ih, G * H * I * sizeof(T),
                                     {G, H, I, x_width, long(sizeof(T)), W},
                                     (H + x_width - 1) / x_width * I * G * x_width * sizeof(T), kept_ih);
  const Forward<T> f{a, s, H, I, O, ld, gates, !work.empty(), chunk,
                     static_cast<T*>(w_packed->data), static_cast<T*>(w_ih_packed->data), fuse_x, ahead,
                     pipelined ? &pipeline : nullptr, ring,
                     !kept_hh, !kept_ih, bias.empty() ? nullptr : bias.data(),
                     h0, h_full, ld_full, w_hr_t.data(), o_pad};
  run_parallel(pipelined ? 2 : threads, [&](int p, int parts) {
    if (pipelined && p == 0) return project_ahead<T, cell>(f);
    if (pipelined) p = 0, parts = 1;  // the steps, on the other thread
    if (wide) forward_thread<T, cell, NB>(f, p, parts);
    else forward_thread<T, cell, 1>(f, p, parts);
  });
  if (!kept_hh) pack_keep(w_packed);
  if (!kept_ih) pack_keep(w_ih_packed);
}

// ---- backward ------------------------------------------------------------------------------

template <typename T>
struct Backward {
  const LayerBackward<T>& g;
  const Steps& s;
  long H, I, O;
  T* dgx;              // (rows, G*H) d pre-activations, input side
  T* dgh;              // hidden side (the same buffer as dgx except in the GRU)
  T* dh_direct;        // GRU: (B, H) the part dh * z of d h_prev
  T* w_padded;         // W_hh (G*H, O) with rows padded to whole panels (o_pad), by columns of
                       // each thread's outputs
  long o_pad;
  const T* h0;         // (B, O)
  const T* c0;         // (B, H), LSTM
  T* xh;               // (rows, ld_xh) every row's h_prev at column xh_col, for dW_hh; with
  long ld_xh, xh_col;  // xh_col = I, its x before it, for [dW_ih | dW_hh] in one product
  T* dw_cat;           // (G*H, I+O) that product (xh_col = I), else null
  // LSTM projection: d h (rows, O) of every row, and W_hr (O, H) padded to (O, h_pad).
  T* dh_out;
  const T* w_hr_padded;
  long h_pad;
};

// Bytes of a panel's column slice of W_hh that the backward's product keeps in L2 across row panels.
constexpr long kSliceBytes = 256 << 10;

template <typename T, CellKind cell, int NB>
void backward_thread(const Backward<T>& k, int p, int parts) {
  constexpr long W = Vec<T>::width;
  constexpr int G = gate_count(cell);
  [[maybe_unused]] constexpr Activation act = cell == CellKind::rnn_relu ? Activation::relu : Activation::tanh;
  constexpr int RP = panel_rows<1>();
  using V = Vec<T>;
  const LayerBackward<T>& g = k.g;
  const LayerForward<T>& a = *g.fwd;
  const Steps& s = k.s;
  const long H = k.H, O = k.O, GH = G * H;
  const bool projected = a.proj > 0;
  const long ld = saved_columns(cell, H, a.proj);
  // Units and outputs in the same whole panels: without a projection a thread's pointwise reads
  // exactly the d h its product wrote.
  const Range units = share(H, p, parts, NB * W);
  const Range outs = share(O, p, parts, NB * W);
  // This thread's columns of W_hh, padded to its last whole panel: its product reads only these.
  const long pad_end = std::min(k.o_pad, (outs.end + NB * W - 1) / (NB * W) * (NB * W));
  for (long r = 0; r < GH && outs.size() > 0; ++r) {
    T* dst = k.w_padded + r * k.o_pad;
    std::memcpy(dst + outs.begin, a.w_hh + r * O + outs.begin, outs.size() * sizeof(T));
    std::fill(dst + outs.end, dst + pad_end, T(0));
  }
  const bool alternate = NB > 1 && a.steps > 0 && narrow_batch(s.size[0]);
  std::vector<T> dg_rev(alternate ? 2 * GH : 0);  // d gates of the (at most two) rows, reversed
  const long n_panels = (outs.size() + NB * W - 1) / (NB * W);
  T* dh = g.dh0;  // the running d h of every row (B, O), ends as dh0
  T* dc = g.dc0;  // LSTM: the running d c (B, H), ends as dc0
  for (long b = 0; b < a.batch; ++b) {
    if (g.dh_n) std::memcpy(dh + b * O + outs.begin, g.dh_n + b * O + outs.begin, outs.size() * sizeof(T));
    else std::memset(dh + b * O + outs.begin, 0, outs.size() * sizeof(T));
    if (cell == CellKind::lstm) {
      if (g.dc_n) std::memcpy(dc + b * H + units.begin, g.dc_n + b * H + units.begin, units.size() * sizeof(T));
      else std::memset(dc + b * H + units.begin, 0, units.size() * sizeof(T));
    }
  }

  for (long t = a.steps - 1; t >= 0; --t) {
    const long bt = s.size[t];
    if (projected) {
      // d h of this step's rows (this thread's outputs), kept for dW_hr; then d(o*tanh(c)) of
      // this thread's units = W_hr^T d h, which needs every output.
      for (long b = 0; b < bt; ++b) {
        const long row = s.offset[t] + b;
        for (long o = outs.begin; o < outs.end; ++o)
          k.dh_out[row * O + o] = dh[b * O + o] + (g.dy ? g.dy[row * O + o] : T(0));
      }
      barrier(parts);
    }
    // Pointwise backward of this thread's units, rows [r, r + R) at a time.
    auto pointwise = [&](long b, long u, long n, V dh_total) __attribute__((always_inline)) {
      const long row = s.offset[t] + b;
      if constexpr (G == 1) {
        store_n(k.dgx + row * H + u, rnn_backward_unit<act>(load_n(a.y + row * H + u, n), dh_total), n);
      } else if constexpr (G == 4) {
        const T* sv = a.saved + row * ld + u;
        const T* c_prev = t == 0 ? k.c0 + b * H + u : a.saved + (s.offset[t - 1] + b) * ld + 4 * H + u;
        const LstmGates<V> av{load_n(sv, n), load_n(sv + H, n), load_n(sv + 2 * H, n), load_n(sv + 3 * H, n)};
        V dcv = load_n(dc + b * H + u, n);
        LstmGates<V> dpre;
        lstm_backward_unit(av, load_n(sv + 4 * H, n), load_n(c_prev, n), dh_total, dcv, dpre);
        store_n(dc + b * H + u, dcv, n);
        T* d = k.dgx + row * GH + u;
        store_n(d, dpre.i, n);
        store_n(d + H, dpre.f, n);
        store_n(d + 2 * H, dpre.g, n);
        store_n(d + 3 * H, dpre.o, n);
      } else {
        const T* sv = a.saved + row * ld + u;
        const T* h_prev = t == 0 ? k.h0 + b * H + u : a.y + (s.offset[t - 1] + b) * H + u;
        const GruGates<V> av{load_n(sv, n), load_n(sv + H, n), load_n(sv + 2 * H, n)};
        GruGates<V> dxs, dhs;
        const V direct = gru_backward_unit(av, load_n(sv + 3 * H, n), load_n(h_prev, n), dh_total, dxs, dhs);
        store_n(k.dh_direct + b * H + u, direct, n);
        T* dx_side = k.dgx + row * GH + u;
        T* dh_side = k.dgh + row * GH + u;
        store_n(dx_side, dxs.r, n);
        store_n(dx_side + H, dxs.z, n);
        store_n(dx_side + 2 * H, dxs.n, n);
        store_n(dh_side, dhs.r, n);
        store_n(dh_side + H, dhs.z, n);
        store_n(dh_side + 2 * H, dhs.n, n);
      }
    };
    for (long u = units.begin; u < units.end; u += W) {
      const long n = std::min(W, units.end - u);
      if (projected) {
        for_each_panel<T, 1, RP>(bt, k.dh_out + s.offset[t] * O, O, k.w_hr_padded + u, k.h_pad, O,
                                 [&](const auto& acc, long rb) {
          for (int r = 0; r < acc.rows; ++r) pointwise(rb + r, u, n, acc.v[r][0]);
        });
      } else {
        for (long b = 0; b < bt; ++b) {
          const T* dy = g.dy ? g.dy + (s.offset[t] + b) * H + u : nullptr;
          const V dh_b = load_n(dh + b * H + u, n);
          pointwise(b, u, n, dy ? load_n(dy, n) + dh_b : dh_b);
        }
      }
    }
    barrier(parts);  // the product below reads every unit's d gates of this step
    // d h_prev of this thread's outputs: W_hh^T d(gates), over all G*H gate rows. With one or two
    // batch rows, every other step reads this thread's columns of W_hh backwards (panels, and
    // gate rows within them against d gates reversed), as the forward does: what the previous
    // step read last is still in L1. With more rows than one panel, the gate rows go in passes of
    // kc, so that a panel's column slice of W_hh stays in L2 while every row panel reads it; the
    // passes sum in d h.
    const T* dg = k.dgh + s.offset[t] * GH;
    const bool back = alternate && t % 2;
    if (back)
      for (long b = 0; b < bt; ++b) std::reverse_copy(dg + b * GH, dg + (b + 1) * GH, dg_rev.data() + b * GH);
    const long kc = bt > panel_rows<NB>() ? std::max<long>(W, kSliceBytes / long(NB * W * sizeof(T))) : GH;
    for (long j = 0; j < n_panels; ++j) {
      const long u0 = outs.begin + (back ? n_panels - 1 - j : j) * NB * W;
      const T* w = k.w_padded + u0 + (back ? (GH - 1) * k.o_pad : 0);
      const long w_stride = back ? -k.o_pad : k.o_pad;
      for (long k0 = 0; k0 < GH; k0 += kc) {
        for_each_panel<T, NB, panel_rows<NB>()>(bt, (back ? dg_rev.data() : dg) + k0, GH, w + k0 * w_stride,
                                                w_stride, std::min(kc, GH - k0), [&](const auto& acc, long rb) {
          for (int i = 0; i < acc.rows * NB; ++i) {  // batch row r, vector nb of the panel's outputs
            const int r = i / NB, nb = i % NB;
            const long b = rb + r, u = u0 + nb * W, n = std::min(W, outs.end - u);
            if (n <= 0) continue;
            V v = acc.v[r][nb];
            if (k0 > 0) v = v + load_n(dh + b * O + u, n);
            else if constexpr (G == 3) v = v + load_n(k.dh_direct + b * H + u, n);
            store_n(dh + b * O + u, v, n);
          }
        });
      }
    }
  }
}

// After the steps, on every thread the kernels may use (the steps may have run on fewer): the
// weight gradients, a share of the gate rows per thread, and dx, a share of the rows.
template <typename T, CellKind cell>
void weight_gradients_thread(const Backward<T>& k, int p, int parts) {
  constexpr long W = Vec<T>::width;
  constexpr int G = gate_count(cell);
  const LayerBackward<T>& g = k.g;
  const LayerForward<T>& a = *g.fwd;
  const Steps& s = k.s;
  const long H = k.H, I = k.I, O = k.O, GH = G * H, rows = s.rows();
  // Every row's h_prev (h0 for step 0, else the previous step's output of the same batch row),
  // and x beside it where both weight gradients come from one product, this thread's share of
  // the steps.
  const Range steps = share(a.steps, p, parts);
  for (long t = steps.begin; t < steps.end; ++t) {
    const T* src = t == 0 ? k.h0 : a.y + s.offset[t - 1] * O;
    for (long row = s.offset[t], b = 0; b < s.size[t]; ++b, ++row) {
      std::memcpy(k.xh + row * k.ld_xh + k.xh_col, src + b * O, O * sizeof(T));
      if (k.dw_cat) std::memcpy(k.xh + row * k.ld_xh, a.x + row * I, I * sizeof(T));
    }
  }
  barrier(parts);
  // The weight gradients of this thread's gate rows in one product (one packing of x and
  // h_prev); where d gates is the same on both sides (all but the GRU), one product gives
  // [dW_ih | dW_hh] (one packing of d gates, not two: the LSTM's backward at B = 16, H = 256
  // about 2% faster).
  const Range gate_rows = share(GH, p, parts, W);
  const long r = gate_rows.begin, n = gate_rows.size();
  if (n > 0) {
    if (k.dw_cat) {
      gemm<T>(true, false, n, I + O, rows, T(1), k.dgx + r, GH, k.xh, k.ld_xh, T(0), k.dw_cat + r * (I + O), I + O);
      for (long j = r; j < r + n; ++j) {
        std::memcpy(g.dw_ih + j * I, k.dw_cat + j * (I + O), I * sizeof(T));
        std::memcpy(g.dw_hh + j * O, k.dw_cat + j * (I + O) + I, O * sizeof(T));
      }
    } else {
      gemm<T>(true, false, n, I, rows, T(1), k.dgx + r, GH, a.x, I, T(0), g.dw_ih + r * I, I);
      gemm<T>(true, false, n, O, rows, T(1), k.dgh + r, GH, k.xh + k.xh_col, k.ld_xh, T(0), g.dw_hh + r * O, O);
    }
    for (auto [db, d] : {std::pair{g.db_ih, k.dgx}, std::pair{g.db_hh, k.dgh}}) {
      if (!db) continue;
      std::fill(db + r, db + r + n, T(0));
      for (long row = 0; row < rows; ++row)
        for (long j = 0; j < n; ++j) db[r + j] += d[row * GH + r + j];
    }
  }
  const Range outs = share(O, p, parts);
  if (a.proj > 0 && outs.size() > 0)  // dW_hr = d h^T (o * tanh(c)) over all rows
    gemm<T>(true, false, outs.size(), H, rows, T(1), k.dh_out + outs.begin, O,
            a.saved + 5 * H, saved_columns(cell, H, a.proj), T(0), g.dw_hr + outs.begin * H, H);
  const Range mine = share(rows, p, parts);
  gemm<T>(false, false, mine.size(), I, GH, T(1), k.dgx + mine.begin * GH, GH, a.w_ih, I, T(0),
          g.dx + mine.begin * I, I);
}

template <typename T, CellKind cell>
void backward(const LayerBackward<T>& g, const Steps& s) {
  const LayerForward<T>& a = *g.fwd;
  constexpr long W = Vec<T>::width;
  const long H = a.hidden, O = a.state(), G = gate_count(cell), rows = s.rows();
  // Every row of dgx, dgh, xh, dw_cat and dh_out is written before it is read.
  const long I = a.input, xh_col = cell == CellKind::gru ? 0 : I;
  Buffer<T> zeros_h, zeros_c, dgx(rows * G * H, false), dgh, dh_direct, xh(rows * (xh_col + O), false),
      dw_cat(cell == CellKind::gru ? 0 : G * H * (I + O), false), dh_out, w_hr_padded;
  if (cell == CellKind::gru) {
    dgh = Buffer<T>(rows * G * H, false);
    dh_direct = Buffer<T>(a.batch * H, false);
  }
  const T* h0 = a.h0;
  if (!h0) {
    zeros_h = Buffer<T>(a.batch * O);
    h0 = zeros_h.data();
  }
  const T* c0 = a.c0;
  if (!c0) {
    zeros_c = Buffer<T>(a.batch * H);
    c0 = zeros_c.data();
  }
  // Output vectors per panel of the product: four share each broadcast of d gates, which one or
  // two batch rows need to hide the FMA latency, and large batches need so that a panel's loads
  // do not outnumber its FMAs (the product 1.65x faster at B = 256, H = 1024). Between the two,
  // one vector's thinner slice of W_hh stays nearer the core (the backward 7% faster at B = 16,
  // H = 256).
  constexpr int NB = 4;
  const long batch0 = a.steps ? s.size[0] : 0;
  const bool wide = narrow_batch(batch0) || batch0 >= 64;
  const long o_pad = (O + NB * W - 1) / (NB * W) * (NB * W), h_pad = (H + W - 1) / W * W;
  Buffer<T> w_padded(G * H * o_pad, false);
  if (a.proj > 0) {
    dh_out = Buffer<T>(rows * O, false);
    w_hr_padded = pad_columns(a.w_hr, O, H, h_pad);
  }
  const Backward<T> k{g, s, H, a.input, O, dgx.data(), dgh.empty() ? dgx.data() : dgh.data(),
                      dh_direct.data(), w_padded.data(), o_pad, h0, c0, xh.data(), xh_col + O, xh_col,
                      dw_cat.empty() ? nullptr : dw_cat.data(),
                      dh_out.data(), w_hr_padded.data(), h_pad};
  const int threads = threads_for(2 * (a.steps ? s.size[0] : 0) * G * H * O, H);
  run_parallel(threads, [&](int p, int parts) {
    if (wide) backward_thread<T, cell, NB>(k, p, parts);
    else backward_thread<T, cell, 1>(k, p, parts);
  });
  run_parallel(get_num_threads(), [&](int p, int parts) { weight_gradients_thread<T, cell>(k, p, parts); });
}

}  // namespace

template <typename T>
void layer_forward(const LayerForward<T>& a) {
  const Steps s = make_steps(a.steps, a.batch, a.batch_sizes);
  const long nh = a.batch * a.state(), nc = a.batch * a.hidden;
  if (a.h0) std::memcpy(a.h_n, a.h0, nh * sizeof(T));
  else std::memset(a.h_n, 0, nh * sizeof(T));
  if (a.cell == CellKind::lstm) {
    if (a.c0) std::memcpy(a.c_n, a.c0, nc * sizeof(T));
    else std::memset(a.c_n, 0, nc * sizeof(T));
  }
  switch (a.cell) {
    case CellKind::rnn_tanh: return forward<T, CellKind::rnn_tanh>(a, s);
    case CellKind::rnn_relu: return forward<T, CellKind::rnn_relu>(a, s);
    case CellKind::lstm: return forward<T, CellKind::lstm>(a, s);
    case CellKind::gru: return forward<T, CellKind::gru>(a, s);
  }
}

template <typename T>
void layer_backward(const LayerBackward<T>& g) {
  const LayerForward<T>& a = *g.fwd;
  const Steps s = make_steps(a.steps, a.batch, a.batch_sizes);
  switch (a.cell) {
    case CellKind::rnn_tanh: return backward<T, CellKind::rnn_tanh>(g, s);
    case CellKind::rnn_relu: return backward<T, CellKind::rnn_relu>(g, s);
    case CellKind::lstm: return backward<T, CellKind::lstm>(g, s);
    case CellKind::gru: return backward<T, CellKind::gru>(g, s);
  }
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward<float>(const LayerBackward<float>&);
template void layer_backward<double>(const LayerBackward<double>&);

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
