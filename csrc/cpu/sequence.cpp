// The time loop of one layer in one direction (see sequence.h), compiled once per instruction
// set. Forward: the input projection of many steps in one GEMM, then per step the recurrent GEMM
// accumulated onto it and one fused pass of the cell's pointwise math. Backward: per step in
// reverse, the pointwise backward and the recurrent GEMM; then the weight gradients and dx as
// GEMMs over all steps.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../cells/gru.h"
#include "../cells/lstm.h"
#include "../cells/rnn.h"
#include "blas.h"
#include "isa.h"
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

// rows x cols matrix (leading dimension ld) set to `bias` in every row, or to zero.
template <typename T>
void fill_rows(T* dst, long rows, long cols, long ld, const T* bias) {
  for (long r = 0; r < rows; ++r) {
    if (bias) std::memcpy(dst + r * ld, bias, cols * sizeof(T));
    else std::memset(dst + r * ld, 0, cols * sizeof(T));
  }
}

// Column sums of a (rows, cols) matrix into out (cols,).
template <typename T>
void column_sums(const T* a, long rows, long cols, T* out) {
  std::fill(out, out + cols, T(0));
  for (long r = 0; r < rows; ++r) {
    const T* row = a + r * cols;
    for_each_unit<T>(cols, [&](auto unit, long j) {
      using U = typename decltype(unit)::type;
      store(out + j, load<U>(out + j) + load<U>(row + j));
    });
  }
}

// A state buffer initialised from `src`, or zeros when src is null.
template <typename T>
void copy_or_zero(T* dst, const T* src, long n) {
  if (src) std::memcpy(dst, src, n * sizeof(T));
  else std::memset(dst, 0, n * sizeof(T));
}

template <typename T>
const T* or_zeros(const T* p, std::vector<T>& zeros, long n) {
  if (p) return p;
  zeros.assign(n, T(0));
  return zeros.data();
}

// Steps whose input projection is computed together in inference mode: enough rows to make a
// good GEMM, a bounded buffer (O(batch * hidden)).
long chunk_steps(const Steps& s, long steps) {
  const long batch = steps ? std::max<long>(1, s.size[0]) : 1;
  return std::clamp<long>(512 / batch, 1, std::max<long>(steps, 1));
}

// ---- forward -------------------------------------------------------------------------------

template <typename T, Activation act>
void rnn_forward(const LayerForward<T>& a, const Steps& s) {
  const long H = a.hidden, I = a.input;
  std::vector<T> bias;
  if (a.b_ih) {
    bias.resize(H);
    for (long j = 0; j < H; ++j) bias[j] = a.b_ih[j] + a.b_hh[j];
  }
  // Pre-activations go straight into y and are activated in place.
  fill_rows(a.y, s.rows(), H, H, bias.empty() ? nullptr : bias.data());
  gemm<T>(false, true, s.rows(), H, I, T(1), a.x, I, a.w_ih, I, T(1), a.y, H);
  for (long t = 0; t < a.steps; ++t) {
    const long bt = s.size[t];
    T* yt = a.y + s.offset[t] * H;
    gemm<T>(false, true, bt, H, H, T(1), a.h_n, H, a.w_hh, H, T(1), yt, H);
    parallel_for(bt, 8 * H, [&](long b0, long b1) {
      for (long b = b0; b < b1; ++b) {
        T* y = yt + b * H;
        T* h = a.h_n + b * H;
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          const U out = rnn_forward_unit<act>(load<U>(y + j));
          store(y + j, out);
          store(h + j, out);
        });
      }
    });
  }
}

template <typename T>
void lstm_forward(const LayerForward<T>& a, const Steps& s) {
  const long H = a.hidden, S = a.state(), I = a.input, G = 4 * H;
  const bool project = a.proj > 0;
  std::vector<T> bias;
  if (a.b_ih) {
    bias.resize(G);
    for (long j = 0; j < G; ++j) bias[j] = a.b_ih[j] + a.b_hh[j];
  }
  const bool training = a.saved != nullptr;
  const long ld = training ? saved_columns(CellKind::lstm, H, a.proj) : G;  // gates (+ c, m)
  const long chunk = training ? std::max<long>(a.steps, 1) : chunk_steps(s, a.steps);
  std::vector<T> work;
  if (!training) work.resize(std::min(s.rows(), s.offset[std::min(chunk, a.steps)]) * G);
  // m = o*tanh(c), the input of the projection h = W_hr m: kept in `saved` when training.
  std::vector<T> m_step;
  if (project && !training) m_step.resize(a.batch * H);

  for (long t0 = 0; t0 < a.steps; t0 += chunk) {
    const long t1 = std::min(t0 + chunk, a.steps);
    const long r0 = s.offset[t0], rows = s.offset[t1] - r0;
    T* gates = training ? a.saved + r0 * ld : work.data();
    fill_rows(gates, rows, G, ld, bias.empty() ? nullptr : bias.data());
    gemm<T>(false, true, rows, G, I, T(1), a.x + r0 * I, I, a.w_ih, I, T(1), gates, ld);
    for (long t = t0; t < t1; ++t) {
      const long bt = s.size[t];
      T* gt = gates + (s.offset[t] - r0) * ld;
      gemm<T>(false, true, bt, G, S, T(1), a.h_n, S, a.w_hh, S, T(1), gt, ld);
      T* mt = training ? gt + 5 * H : m_step.data();
      const long ldm = training ? ld : H;
      parallel_for(bt, 40 * H, [&](long b0, long b1) {
        for (long b = b0; b < b1; ++b) {
          T* g = gt + b * ld;
          T* c = a.c_n + b * H;
          T* h = a.h_n + b * S;
          T* y = a.y + (s.offset[t] + b) * S;
          T* m = mt + b * ldm;
          for_each_unit<T>(H, [&](auto unit, long j) {
            using U = typename decltype(unit)::type;
            LstmGates<U> gv{load<U>(g + j), load<U>(g + H + j), load<U>(g + 2 * H + j),
                            load<U>(g + 3 * H + j)};
            U c_new, h_new;
            lstm_forward_unit(gv, load<U>(c + j), c_new, h_new);
            store(c + j, c_new);
            if (project) {
              store(m + j, h_new);
            } else {
              store(h + j, h_new);
              store(y + j, h_new);
            }
            if (training) {
              store(g + j, gv.i);
              store(g + H + j, gv.f);
              store(g + 2 * H + j, gv.g);
              store(g + 3 * H + j, gv.o);
              store(g + 4 * H + j, c_new);
            }
          });
        }
      });
      if (project) {  // h = W_hr m
        T* yt = a.y + s.offset[t] * S;
        gemm<T>(false, true, bt, S, H, T(1), mt, ldm, a.w_hr, H, T(0), yt, S);
        std::memcpy(a.h_n, yt, bt * S * sizeof(T));
      }
    }
  }
}

template <typename T>
void gru_forward(const LayerForward<T>& a, const Steps& s) {
  const long H = a.hidden, I = a.input, G = 3 * H;
  const bool training = a.saved != nullptr;
  const long ld = training ? 4 * H : G;  // r z n (+ hn) per row
  const long chunk = training ? std::max<long>(a.steps, 1) : chunk_steps(s, a.steps);
  std::vector<T> work;
  if (!training) work.resize(std::min(s.rows(), s.offset[std::min(chunk, a.steps)]) * G);
  std::vector<T> hgates(a.batch * G);  // W_hh h_prev + b_hh of one step

  for (long t0 = 0; t0 < a.steps; t0 += chunk) {
    const long t1 = std::min(t0 + chunk, a.steps);
    const long r0 = s.offset[t0], rows = s.offset[t1] - r0;
    T* xgates = training ? a.saved + r0 * ld : work.data();
    fill_rows(xgates, rows, G, ld, a.b_ih);
    gemm<T>(false, true, rows, G, I, T(1), a.x + r0 * I, I, a.w_ih, I, T(1), xgates, ld);
    for (long t = t0; t < t1; ++t) {
      const long bt = s.size[t];
      T* xt = xgates + (s.offset[t] - r0) * ld;
      fill_rows(hgates.data(), bt, G, G, a.b_hh);
      gemm<T>(false, true, bt, G, H, T(1), a.h_n, H, a.w_hh, H, T(1), hgates.data(), G);
      parallel_for(bt, 30 * H, [&](long b0, long b1) {
        for (long b = b0; b < b1; ++b) {
          T* xg = xt + b * ld;
          const T* hg = hgates.data() + b * G;
          T* h = a.h_n + b * H;
          T* y = a.y + (s.offset[t] + b) * H;
          for_each_unit<T>(H, [&](auto unit, long j) {
            using U = typename decltype(unit)::type;
            const GruGates<U> x3{load<U>(xg + j), load<U>(xg + H + j), load<U>(xg + 2 * H + j)};
            const GruGates<U> h3{load<U>(hg + j), load<U>(hg + H + j), load<U>(hg + 2 * H + j)};
            GruGates<U> act;
            const U h_new = gru_forward_unit(x3, h3, load<U>(h + j), act);
            store(h + j, h_new);
            store(y + j, h_new);
            if (training) {
              store(xg + j, act.r);
              store(xg + H + j, act.z);
              store(xg + 2 * H + j, act.n);
              store(xg + 3 * H + j, h3.n);
            }
          });
        }
      });
    }
  }
}

// ---- backward ------------------------------------------------------------------------------

// The weight gradients and dx from the pre-activation gradients of all steps.
// dgx: (rows, G*H) input side; dgh: hidden side (the same as dgx except in the GRU).
template <typename T>
void weight_gradients(const LayerBackward<T>& g, const Steps& s, const T* dgx, const T* dgh,
                      const T* h0) {
  const LayerForward<T>& a = *g.fwd;
  const long S = a.state(), I = a.input, G = gate_count(a.cell) * a.hidden, rows = s.rows();
  // h_prev of every row: h0 for step 0, else the previous step's output of the same batch row.
  std::vector<T> h_prev(rows * S);
  for (long t = 0; t < a.steps; ++t) {
    const T* src = t == 0 ? h0 : a.y + s.offset[t - 1] * S;
    std::memcpy(h_prev.data() + s.offset[t] * S, src, s.size[t] * S * sizeof(T));
  }
  gemm<T>(false, false, rows, I, G, T(1), dgx, G, a.w_ih, I, T(0), g.dx, I);
  gemm<T>(true, false, G, I, rows, T(1), dgx, G, a.x, I, T(0), g.dw_ih, I);
  gemm<T>(true, false, G, S, rows, T(1), dgh, G, h_prev.data(), S, T(0), g.dw_hh, S);
  if (g.db_ih) column_sums(dgx, rows, G, g.db_ih);
  if (g.db_hh) column_sums(dgh, rows, G, g.db_hh);
}

// dh of row b at step t: the output's gradient plus the recurrent one.
template <typename T>
inline const T* dy_row(const LayerBackward<T>& g, const Steps& s, long t, long b) {
  return g.dy ? g.dy + (s.offset[t] + b) * g.fwd->state() : nullptr;
}

template <typename T, typename U>
inline U total_dh(const T* dy, const T* dh_rec, long j) {
  return dy ? load<U>(dy + j) + load<U>(dh_rec + j) : load<U>(dh_rec + j);
}

template <typename T, Activation act>
void rnn_backward(const LayerBackward<T>& g, const Steps& s, const T* h0) {
  const LayerForward<T>& a = *g.fwd;
  const long H = a.hidden;
  std::vector<T> dpre(s.rows() * H);
  T* dh = g.dh0;  // the running d h, ends as dh0
  copy_or_zero(dh, g.dh_n, a.batch * H);
  for (long t = a.steps - 1; t >= 0; --t) {
    const long bt = s.size[t];
    T* dt = dpre.data() + s.offset[t] * H;
    parallel_for(bt, 4 * H, [&](long b0, long b1) {
      for (long b = b0; b < b1; ++b) {
        const T* y = a.y + (s.offset[t] + b) * H;
        const T* dy = dy_row(g, s, t, b);
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          store(dt + b * H + j, rnn_backward_unit<act>(load<U>(y + j), total_dh<T, U>(dy, dh + b * H, j)));
        });
      }
    });
    gemm<T>(false, false, bt, H, H, T(1), dt, H, a.w_hh, H, T(0), dh, H);
  }
  weight_gradients(g, s, dpre.data(), dpre.data(), h0);
}

template <typename T>
void lstm_backward(const LayerBackward<T>& g, const Steps& s, const T* h0, const T* c0) {
  const LayerForward<T>& a = *g.fwd;
  const long H = a.hidden, S = a.state(), G = 4 * H, ld = saved_columns(CellKind::lstm, H, a.proj);
  const bool project = a.proj > 0;
  std::vector<T> dgates(s.rows() * G);
  // With a projection: d h of every row (for dW_hr), and d m = W_hr^T d h of one step.
  std::vector<T> dh_rows, dm;
  if (project) {
    dh_rows.resize(s.rows() * S);
    dm.resize(a.batch * H);
  }
  T* dh = g.dh0;
  T* dc = g.dc0;
  copy_or_zero(dh, g.dh_n, a.batch * S);
  copy_or_zero(dc, g.dc_n, a.batch * H);
  for (long t = a.steps - 1; t >= 0; --t) {
    const long bt = s.size[t];
    T* dt = dgates.data() + s.offset[t] * G;
    if (project) {
      T* dht = dh_rows.data() + s.offset[t] * S;
      for (long i = 0; i < bt * S; ++i) dht[i] = dh[i] + (g.dy ? g.dy[s.offset[t] * S + i] : T(0));
      gemm<T>(false, false, bt, H, S, T(1), dht, S, a.w_hr, H, T(0), dm.data(), H);
    }
    parallel_for(bt, 30 * H, [&](long b0, long b1) {
      for (long b = b0; b < b1; ++b) {
        const T* sv = a.saved + (s.offset[t] + b) * ld;
        const T* c_prev = t == 0 ? c0 + b * H : a.saved + (s.offset[t - 1] + b) * ld + 4 * H;
        // d of the cell's own output o*tanh(c): d h, or d m with a projection.
        const T* dy = project ? nullptr : dy_row(g, s, t, b);
        const T* dh_cell = project ? dm.data() + b * H : dh + b * S;
        T* d = dt + b * G;
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          const LstmGates<U> act{load<U>(sv + j), load<U>(sv + H + j), load<U>(sv + 2 * H + j),
                                 load<U>(sv + 3 * H + j)};
          U dcj = load<U>(dc + b * H + j);
          LstmGates<U> dpre;
          lstm_backward_unit(act, load<U>(sv + 4 * H + j), load<U>(c_prev + j),
                             total_dh<T, U>(dy, dh_cell, j), dcj, dpre);
          store(dc + b * H + j, dcj);
          store(d + j, dpre.i);
          store(d + H + j, dpre.f);
          store(d + 2 * H + j, dpre.g);
          store(d + 3 * H + j, dpre.o);
        });
      }
    });
    gemm<T>(false, false, bt, S, G, T(1), dt, G, a.w_hh, S, T(0), dh, S);
  }
  weight_gradients(g, s, dgates.data(), dgates.data(), h0);
  if (project)  // dW_hr = sum over rows of d h m^T
    gemm<T>(true, false, S, H, s.rows(), T(1), dh_rows.data(), S, a.saved + 5 * H, ld, T(0),
            g.dw_hr, H);
}

template <typename T>
void gru_backward(const LayerBackward<T>& g, const Steps& s, const T* h0) {
  const LayerForward<T>& a = *g.fwd;
  const long H = a.hidden, G = 3 * H, ld = 4 * H;
  std::vector<T> dgx(s.rows() * G), dgh(s.rows() * G);
  T* dh = g.dh0;
  copy_or_zero(dh, g.dh_n, a.batch * H);
  for (long t = a.steps - 1; t >= 0; --t) {
    const long bt = s.size[t];
    parallel_for(bt, 30 * H, [&](long b0, long b1) {
      for (long b = b0; b < b1; ++b) {
        const long row = s.offset[t] + b;
        const T* sv = a.saved + row * ld;
        const T* h_prev = t == 0 ? h0 + b * H : a.y + (s.offset[t - 1] + b) * H;
        const T* dy = dy_row(g, s, t, b);
        T* dx_side = dgx.data() + row * G;
        T* dh_side = dgh.data() + row * G;
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          const GruGates<U> act{load<U>(sv + j), load<U>(sv + H + j), load<U>(sv + 2 * H + j)};
          GruGates<U> dxs, dhs;
          const U dh_direct = gru_backward_unit(act, load<U>(sv + 3 * H + j), load<U>(h_prev + j),
                                                total_dh<T, U>(dy, dh + b * H, j), dxs, dhs);
          store(dh + b * H + j, dh_direct);
          store(dx_side + j, dxs.r);
          store(dx_side + H + j, dxs.z);
          store(dx_side + 2 * H + j, dxs.n);
          store(dh_side + j, dhs.r);
          store(dh_side + H + j, dhs.z);
          store(dh_side + 2 * H + j, dhs.n);
        });
      }
    });
    gemm<T>(false, false, bt, H, G, T(1), dgh.data() + s.offset[t] * G, G, a.w_hh, H, T(1), dh, H);
  }
  weight_gradients(g, s, dgx.data(), dgh.data(), h0);
}

}  // namespace

template <typename T>
void layer_forward(const LayerForward<T>& a) {
  const Steps s = make_steps(a.steps, a.batch, a.batch_sizes);
  copy_or_zero(a.h_n, a.h0, a.batch * a.state());
  if (a.cell == CellKind::lstm) copy_or_zero(a.c_n, a.c0, a.batch * a.hidden);
  switch (a.cell) {
    case CellKind::rnn_tanh: return rnn_forward<T, Activation::tanh>(a, s);
    case CellKind::rnn_relu: return rnn_forward<T, Activation::relu>(a, s);
    case CellKind::lstm: return lstm_forward(a, s);
    case CellKind::gru: return gru_forward(a, s);
  }
}

template <typename T>
void layer_backward(const LayerBackward<T>& g) {
  const LayerForward<T>& a = *g.fwd;
  const Steps s = make_steps(a.steps, a.batch, a.batch_sizes);
  std::vector<T> zeros_h, zeros_c;
  const T* h0 = or_zeros(a.h0, zeros_h, a.batch * a.state());
  switch (a.cell) {
    case CellKind::rnn_tanh: return rnn_backward<T, Activation::tanh>(g, s, h0);
    case CellKind::rnn_relu: return rnn_backward<T, Activation::relu>(g, s, h0);
    case CellKind::lstm: return lstm_backward(g, s, h0, or_zeros(a.c0, zeros_c, a.batch * a.hidden));
    case CellKind::gru: return gru_backward(g, s, h0);
  }
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward<float>(const LayerBackward<float>&);
template void layer_backward<double>(const LayerBackward<double>&);

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
