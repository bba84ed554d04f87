// The level loop of the Tree-LSTM (see tree.h), compiled once per instruction set.
// Forward: the input projection of the nodes with input in one GEMM; then level by level, leaves
// first, the children's h gathered, the level's product with U (packed once per call; Child-Sum:
// one more over the level's edges for the per-child forget gates) and one fused pass of the cell
// over the level's nodes, which adds the projection and the biases.
// Backward: levels in reverse, the cell's backward, the product taking the level's gradients to
// its children and a scatter onto them; then the weight gradients and dx as GEMMs over all nodes.
// Each child has one parent, so the threads of a level never write the same child.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../cells/tree_lstm.h"
#include "blas.h"
#include "isa.h"
#include "panel.h"
#include "threads.h"
#include "tree.h"
#include "units.h"

namespace fastrnn {
namespace FASTRNN_ISA {
namespace {

// Level l: rows r0 .. r1 and their edges e0 .. e1.
struct Level {
  long r0, r1, e0, e1;
  long rows() const { return r1 - r0; }
  long edges() const { return e1 - e0; }
};

Level level_of(const Forest& f, long l) {
  const long r0 = f.level_offsets[l], r1 = f.level_offsets[l + 1];
  return {r0, r1, f.child_offsets[r0], f.child_offsets[r1]};
}

// Rough cost of one node's pointwise work, for parallel_for.
long node_cost(const Level& lv, long hidden) {
  return (lv.edges() / std::max(1L, lv.rows()) + 4) * hidden * 20;
}

template <typename T>
void add_into(T* dst, const T* src, long n) {
  for_each_unit<T>(n, [&](auto unit, long j) {
    unit.store(dst + j, unit.load(dst + j) + unit.load(src + j));
  });
}

// Column sums of a (rows, cols) matrix (row stride lda) into out (cols,).
template <typename T>
void column_sums(const T* a, long rows, long cols, long lda, T* out) {
  std::fill(out, out + cols, T(0));
  for (long r = 0; r < rows; ++r) add_into(out, a + r * lda, cols);
}

// dst[to[r]] = src[from[r]] for r < rows, `width` values a row (a null index is the identity).
template <typename T>
void permute_rows(const T* src, const long* from, T* dst, const long* to, long rows, long width) {
  parallel_for(rows, width, [&](long b0, long b1) {
    for (long r = b0; r < b1; ++r)
      std::memcpy(dst + (to ? to[r] : r) * width, src + (from ? from[r] : r) * width,
                  width * sizeof(T));
  });
}

// The nodes whose row of x (n, I) is not all zero, in node order. A node without input (in SST-like
// trees, every inner node) adds nothing to W_ih x nor to dW_ih, so the GEMMs leave it out.
template <typename T>
std::vector<long> nodes_with_input(const T* x, long n, long I) {
  std::vector<char> has(n);
  parallel_for(n, I, [&](long j0, long j1) {
    for (long j = j0; j < j1; ++j)
      has[j] = std::any_of(x + j * I, x + (j + 1) * I, [](T v) { return v != T(0); });
  });
  std::vector<long> nodes;
  for (long j = 0; j < n; ++j)
    if (has[j]) nodes.push_back(j);
  return nodes;
}

// The children's h of rows r0 .. r1, as the level's product with U reads it. Child-Sum (arity 0):
// out (rows, H) = sum_k h_k. N-ary: out (rows, N*H) = [h_1; ...; h_N], zeros where missing.
template <typename T>
void gather_children(const Forest& f, long r0, long r1, long H, long arity, const T* h, T* out) {
  const long width = arity ? arity * H : H;
  const long avg = (f.child_offsets[r1] - f.child_offsets[r0]) / std::max(1L, r1 - r0) + 1;
  parallel_for(r1 - r0, avg * width, [&](long b0, long b1) {
    for (long r = r0 + b0; r < r0 + b1; ++r) {
      T* o = out + (r - r0) * width;
      const long eb = f.child_offsets[r], kids = f.child_offsets[r + 1] - eb;
      for (long k = 0; k < kids; ++k) {  // N-ary: child k's slot; Child-Sum: the sum
        const T* hk = h + f.child_rows[eb + k] * H;
        if (arity || k == 0) std::memcpy(arity ? o + k * H : o, hk, H * sizeof(T));
        else add_into(o, hk, H);
      }
      const long filled = arity ? kids * H : (kids ? H : 0);
      std::memset(o + filled, 0, (width - filled) * sizeof(T));
    }
  });
}

// ---- the levels' products ------------------------------------------------------------------
// A level's product with U (forward: the children's h by U^T; backward: the gradients by U) has a
// few dozen to a few thousand rows. A BLAS call repacks U on every call, and a level of a few
// dozen nodes spends as long packing U as multiplying by it; so U is packed once per call, for
// the panels of panel.h, and every level reads the packed copy.

// B (K, n) in column blocks of up to kBlock vectors: block b holds B's columns b*cols .. on, its K
// rows of `width(b)` values side by side (the last block as narrow as its columns allow, zeros
// past n).
template <typename T>
struct PackedCols {
  static constexpr int kBlock = 4;  // vectors per block: 4 x panel_rows<4>() accumulators
  static constexpr long W = Vec<T>::width, cols = kBlock * W;
  long K = 0, n = 0;
  Buffer<T> data;
  long blocks() const { return (n + cols - 1) / cols; }
  long width(long b) const { return std::min(cols, (n - b * cols + W - 1) / W * W); }
  const T* block(long b) const { return data.data() + b * K * cols; }
};

// B packed by its rows: fill(dst, k, c0, nc) writes B[k][c0 .. c0 + nc) to dst; the rest of the
// block's row is zeros.
template <typename T, typename Fill>
PackedCols<T> pack(long K, long n, Fill&& fill) {
  PackedCols<T> p;
  p.K = K;
  p.n = n;
  p.data = Buffer<T>(p.blocks() * K * PackedCols<T>::cols, false);
  parallel_for(p.blocks(), K * PackedCols<T>::cols, [&](long b0, long b1) {
    for (long b = b0; b < b1; ++b) {
      T* dst = p.data.data() + b * K * PackedCols<T>::cols;
      const long c0 = b * PackedCols<T>::cols, w = p.width(b), nc = std::min(w, n - c0);
      for (long k = 0; k < K; ++k) {
        fill(dst + k * w, k, c0, nc);
        std::fill(dst + k * w + nc, dst + (k + 1) * w, T(0));
      }
    }
  });
  return p;
}

// B from its rows: row(k) points at B[k][0 .. n).
template <typename T, typename Row>
PackedCols<T> pack_rows(long K, long n, Row&& row) {
  return pack<T>(K, n, [&](T* dst, long k, long c0, long nc) {
    std::memcpy(dst, row(k) + c0, nc * sizeof(T));
  });
}

// B from its columns: column(c) points at B[0 .. K)[c] (a row of B^T). A packed row reads the
// block's columns in step, their current lines staying in L1 (tiles of k, each column's run of k
// read at once, measured slower in the forward).
template <typename T, typename Column>
PackedCols<T> pack_columns(long K, long n, Column&& column) {
  return pack<T>(K, n, [&](T* dst, long k, long c0, long nc) {
    for (long c = 0; c < nc; ++c) dst[c] = column(c0 + c)[k];
  });
}

// Rows k0 .. k0 + K of a packed B, against K columns of A (m rows, row stride lda).
template <typename T>
struct PackedOperand {
  const T* a;
  long lda;
  long k0, K;
};

// C (m, B.n) (row stride ldc) = first.a B[first rows] (+ second.a B[second rows]). The threads
// take shares of the rows where each gets at least two panels of them, else shares of B's column
// blocks: a level of 150 or 300 columns has 3 or 5 blocks, which two threads split 2:1 or 3:2,
// while rows split evenly (measured, 2 threads, 256 trees: the levels' products of the N-ary
// backward 10.6 -> 9.2 ms, the Child-Sum forward 15.2 -> 14.6 ms).
template <typename T>
void packed_product(long m, const PackedCols<T>& b, const PackedOperand<T>& first,
                    const PackedOperand<T>& second, T* c, long ldc) {
  constexpr long W = PackedCols<T>::W;
  constexpr int kRows = panel_rows<PackedCols<T>::kBlock>();
  // Rows m0 .. m1 of C, column block blk, G vectors wide.
  const auto run_block = [&](auto vectors, long blk, long m0, long m1) {
    constexpr int G = decltype(vectors)::value;
    const long w = b.width(blk), c0 = blk * PackedCols<T>::cols, nc = std::min(w, b.n - c0);
    const T* packed = b.block(blk);
    const Operand<T> x{first.a + m0 * first.lda, first.lda, packed + first.k0 * w, w, first.K};
    const Operand<T> y{second.a + m0 * second.lda, second.lda, packed + second.k0 * w, w, second.K};
    for_each_panel<T, G, panel_rows<G>()>(m1 - m0, x, y, [&](const auto& acc, long r0) {
      for (int r = 0; r < acc.rows; ++r) {
        T* row = c + (m0 + r0 + r) * ldc + c0;
        for (int g = 0; g < G; ++g) store_n(row + g * W, acc.v[r][g], std::min(W, nc - g * W));
      }
    });
  };
  const auto run = [&](long blk, long m0, long m1) {
    switch (b.width(blk) / W) {
      case 1: run_block(std::integral_constant<int, 1>{}, blk, m0, m1); break;
      case 2: run_block(std::integral_constant<int, 2>{}, blk, m0, m1); break;
      case 3: run_block(std::integral_constant<int, 3>{}, blk, m0, m1); break;
      default: run_block(std::integral_constant<int, PackedCols<T>::kBlock>{}, blk, m0, m1); break;
    }
  };
  const long cost = (first.K + second.K) * PackedCols<T>::cols;  // per row and block
  if (m >= 2 * kRows * get_num_threads()) {
    parallel_for(m, cost * b.blocks(), [&](long m0, long m1) {
      for (long blk = 0; blk < b.blocks(); ++blk) run(blk, m0, m1);
    });
  } else {
    parallel_for(b.blocks(), m * cost, [&](long b0, long b1) {
      for (long blk = b0; blk < b1; ++blk) run(blk, 0, m);
    });
  }
}

template <typename T>
void packed_product(long m, const PackedCols<T>& b, const PackedOperand<T>& first, T* c, long ldc) {
  packed_product(m, b, first, PackedOperand<T>{first.a, first.lda, 0, 0}, c, ldc);
}

// ---- forward -------------------------------------------------------------------------------

template <typename T>
void forward(const TreeForward<T>& a) {
  const Forest& f = *a.forest;
  const long n = f.n_nodes, H = a.hidden, I = a.input, N = a.arity, G = 4 * H;
  const long ld_x = std::max(1L, I);
  const long in_width = N ? N * H : H;  // the level product's input: h~ or [h_1; ...; h_N]
  // The level product's output by row: Child-Sum U_iuo h~ = [i; u; o]; N-ary [i; f_1..f_N; u; o].
  const long rec_width = N ? (3 + N) * H : 3 * H, rec_u = N ? (1 + N) * H : H, rec_o = rec_u + H;
  const bool training = a.saved != nullptr;
  TreeSaved<T> local;
  TreeSaved<T>& s = training ? *a.saved : local;

  long max_rows = 0, max_edges = 0;
  for (long l = 0; l < f.n_levels; ++l) {
    const Level lv = level_of(f, l);
    max_rows = std::max(max_rows, lv.rows());
    max_edges = std::max(max_edges, lv.edges());
  }
  // Every value of these is written below before it is read (gates: training only).
  if (training) s.gates = Buffer<T>(n * G, false);
  s.c = Buffer<T>(n * H, false);
  s.h = Buffer<T>(n * H, false);
  s.forget = Buffer<T>((training ? f.n_edges() : max_edges) * H, false);  // inference: one level's

  // The x side: W_ih x of the k nodes with input, read by the levels' passes (the other nodes
  // have none). Their rows of x: x itself when it holds only those or every node's, else gathered.
  Buffer<T> x_rows;
  const T* xr = a.x;
  if (a.input_nodes) {
    s.inputs.assign(a.input_nodes, a.input_nodes + a.n_inputs);
  } else {
    s.inputs = nodes_with_input(a.x, n, I);
    if (long(s.inputs.size()) < n) {  // else inputs[j] == j
      x_rows = Buffer<T>(s.inputs.size() * ld_x, false);
      permute_rows(a.x, s.inputs.data(), x_rows.data(), nullptr, long(s.inputs.size()), I);
      xr = x_rows.data();
    }
  }
  const long k = long(s.inputs.size());
  Buffer<T> projected(k * G, false);
  parallel_gemm<T>(false, true, k, G, I, T(1), xr, ld_x, a.w_ih, ld_x, T(0), projected.data(), G);
  std::vector<long> projected_row(n, -1);  // row -> its row of `projected`, -1: no input
  for (long j = 0; j < k; ++j) projected_row[f.row_of[s.inputs[j]]] = j;
  // b_ih, and for Child-Sum + b_hh (its f block, like b_ih's, is shared by every child); the
  // N-ary b_hh is per child, added with the level's product.
  std::vector<T> bias;
  if (a.b_ih) {
    bias.assign(a.b_ih, a.b_ih + G);
    if (!N)
      for (long j = 0; j < G; ++j) bias[j] += a.b_hh[j];
  }
  const T* b = bias.empty() ? nullptr : bias.data();
  const T* b_rec = N ? a.b_hh : nullptr;
  // U^T packed for the levels' products: N-ary all of it; Child-Sum the rows of i, u and o side by
  // side (one product over h~), and those of f apart (over each child's h).
  const T* U = a.w_hh;
  const PackedCols<T> u_rec = pack_columns<T>(in_width, rec_width, [&](long c) {
    return U + (N || c < H ? c : c + H) * in_width;
  });
  const PackedCols<T> u_f = pack_columns<T>(N ? 0 : H, N ? 0 : H, [&](long c) { return U + (H + c) * H; });

  Buffer<T> h_in(max_rows * in_width, false), h_edge(N ? 0 : max_edges * H, false);
  Buffer<T> rec(max_rows * rec_width, false);
  for (long l = 0; l < f.n_levels; ++l) {
    const Level lv = level_of(f, l);
    const long m = lv.rows(), ne = lv.edges();
    T* forget = s.forget.data() + (training ? lv.e0 : 0) * H;  // the level's edges
    if (ne > 0) {
      gather_children(f, lv.r0, lv.r1, H, N, s.h.data(), h_in.data());
      packed_product<T>(m, u_rec, {h_in.data(), in_width, 0, in_width}, rec.data(), rec_width);
      if (!N) {  // the edges' forget pre-activations U_f h_k
        permute_rows(s.h.data(), f.child_rows.data() + lv.e0, h_edge.data(), nullptr, ne, H);
        packed_product<T>(ne, u_f, {h_edge.data(), H, 0, H}, forget, H);
      }
    }
    parallel_for(m, node_cost(lv, H), [&](long b0, long b1) {
      for (long r = lv.r0 + b0; r < lv.r0 + b1; ++r) {
        const long eb = f.child_offsets[r], n_kids = f.child_offsets[r + 1] - eb;
        const long* kids = f.child_rows.data() + eb;
        T* f_row = forget + (eb - lv.e0) * H;  // child k's forget gate at f_row + k*H
        const long pj = projected_row[r];
        const T* p = pj >= 0 ? projected.data() + pj * G : nullptr;      // W_ih x, or none
        const T* q = ne > 0 ? rec.data() + (r - lv.r0) * rec_width : nullptr;  // U h, or none
        // Child k's recurrent forget pre-activation, H apart for either kind (N-ary: + b_hh's).
        const T* f_rec = N ? q + H : f_row;
        const T* f_bias = b_rec ? b_rec + H : nullptr;
        T* g = training ? s.gates.data() + r * G : nullptr;
        T* c = s.c.data() + r * H;
        T* h = s.h.data() + r * H;
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          // Gate block `gate` of the x side (W_ih x + bias) plus the level's product at `off`.
          const auto pre = [&](long gate, long off) {
            U v = p ? unit.load(p + gate * H + j) : U(0);
            if (b) v = v + unit.load(b + gate * H + j);
            if (q) v = v + unit.load(q + off + j);
            if (b_rec) v = v + unit.load(b_rec + off + j);
            return v;
          };
          LstmGates<U> gv{pre(0, 0), U(0), pre(2, rec_u), pre(3, rec_o)};
          U xf = p ? unit.load(p + H + j) : U(0);
          if (b) xf = xf + unit.load(b + H + j);
          U c_new, h_new;
          tree_lstm_forward_unit(
              gv, n_kids,
              [&](long k) {
                const U v = xf + unit.load(f_rec + k * H + j);
                return f_bias ? v + unit.load(f_bias + k * H + j) : v;
              },
              [&](long k) { return unit.load(s.c.data() + kids[k] * H + j); },
              [&](long k, U fk) {
                if (training) unit.store(f_row + k * H + j, fk);
              },
              c_new, h_new);
          unit.store(c + j, c_new);
          unit.store(h + j, h_new);
          if (training) {
            unit.store(g + j, gv.i);
            unit.store(g + 2 * H + j, gv.g);
            unit.store(g + 3 * H + j, gv.o);
          }
        });
      }
    });
  }
  permute_rows(s.h.data(), nullptr, a.h, f.order.data(), n, H);
  permute_rows(s.c.data(), nullptr, a.c, f.order.data(), n, H);
}

// ---- backward ------------------------------------------------------------------------------

template <typename T>
void backward(const TreeBackward<T>& g) {
  const TreeForward<T>& a = *g.fwd;
  const TreeSaved<T>& s = *a.saved;
  const Forest& f = *a.forest;
  const long n = f.n_nodes, E = f.n_edges(), H = a.hidden, I = a.input, N = a.arity, G = 4 * H;
  const long ld_x = std::max(1L, I);
  const long in_width = N ? N * H : H;
  const long gh_width = N ? (3 + N) * H : 0;
  // Only rows above the leaves (level 0) have children.
  const long r_inner = f.n_levels > 1 ? f.level_offsets[1] : n, inner = n - r_inner;

  // The running d h and d c of every row: the caller's, plus what each parent sends down.
  Buffer<T> dh(n * H, !g.dh), dc(n * H, !g.dc);
  if (g.dh) permute_rows(g.dh, f.order.data(), dh.data(), nullptr, n, H);
  if (g.dc) permute_rows(g.dc, f.order.data(), dc.data(), nullptr, n, H);
  // Every row of these is written by the level loop before it is read.
  Buffer<T> dgx(n * G, false);                 // d pre, x side: i, sum_k f_k, u, o
  Buffer<T> d_forget(N ? 0 : E * H, false);    // Child-Sum: d pre of each edge's forget gate
  Buffer<T> dgh(N ? inner * gh_width : 0, false);  // N-ary, rows from r_inner: d pre, h side:
                                                   // i, f_1 .. f_N, u, o

  long max_rows = 0, max_edges = 0;
  for (long l = 0; l < f.n_levels; ++l) {
    const Level lv = level_of(f, l);
    max_rows = std::max(max_rows, lv.rows());
    max_edges = std::max(max_edges, lv.edges());
  }
  Buffer<T> d_in(max_rows * in_width, false), d_edge(N ? 0 : max_edges * H, false);
  // U packed for the levels' products: N-ary all of it; Child-Sum the rows of i, u and o (against
  // the i and u, o columns of dgx), and those of f apart (against each edge's d f).
  const T* U = a.w_hh;
  const PackedCols<T> u_rec = pack_rows<T>(N ? gh_width : 3 * H, in_width, [&](long k) {
    return U + (N || k < H ? k : k + H) * in_width;
  });
  const PackedCols<T> u_f = pack_rows<T>(N ? 0 : H, N ? 0 : H, [&](long k) { return U + (H + k) * H; });

  for (long l = f.n_levels - 1; l >= 0; --l) {
    const Level lv = level_of(f, l);
    const long m = lv.rows(), ne = lv.edges();
    parallel_for(m, node_cost(lv, H), [&](long b0, long b1) {
      for (long r = lv.r0 + b0; r < lv.r0 + b1; ++r) {
        const T* gates = s.gates.data() + r * G;
        const long eb = f.child_offsets[r], n_kids = f.child_offsets[r + 1] - eb;
        const long* kids = f.child_rows.data() + eb;
        const T* forget = s.forget.data() + eb * H;
        T* dx_side = dgx.data() + r * G;
        // N-ary: the h side of a leaf would multiply no child's h, and is not kept.
        T* dh_side = N && n_kids ? dgh.data() + (r - r_inner) * gh_width : nullptr;
        T* d_f = dh_side ? dh_side + H : d_forget.data() + eb * H;  // child k's at d_f + k*H
        if (dh_side) std::memset(d_f + n_kids * H, 0, (N - n_kids) * H * sizeof(T));
        for_each_unit<T>(H, [&](auto unit, long j) {
          using U = typename decltype(unit)::type;
          const LstmGates<U> act{unit.load(gates + j), U(0), unit.load(gates + 2 * H + j),
                                 unit.load(gates + 3 * H + j)};
          LstmGates<U> dpre;
          U d_f_sum(0);
          tree_lstm_backward_unit(
              act, unit.load(s.c.data() + r * H + j), unit.load(dh.data() + r * H + j),
              unit.load(dc.data() + r * H + j), n_kids,
              [&](long k) { return unit.load(forget + k * H + j); },
              [&](long k) { return unit.load(s.c.data() + kids[k] * H + j); },
              [&](long k, U d_pre_f, U d_c_child) {
                unit.store(d_f + k * H + j, d_pre_f);
                d_f_sum += d_pre_f;
                T* dck = dc.data() + kids[k] * H + j;
                unit.store(dck, unit.load(dck) + d_c_child);
              },
              dpre);
          unit.store(dx_side + j, dpre.i);
          unit.store(dx_side + H + j, d_f_sum);  // f's x side is shared by all children
          unit.store(dx_side + 2 * H + j, dpre.g);
          unit.store(dx_side + 3 * H + j, dpre.o);
          if (dh_side) {
            unit.store(dh_side + j, dpre.i);
            unit.store(dh_side + (1 + N) * H + j, dpre.g);
            unit.store(dh_side + (2 + N) * H + j, dpre.o);
          }
        });
      }
    });
    if (ne == 0) continue;
    // d of the level product's input, then onto each child's dh.
    if (!N) {
      const T* dg = dgx.data() + lv.r0 * G;
      packed_product<T>(m, u_rec, {dg, G, 0, H}, {dg + 2 * H, G, H, 2 * H}, d_in.data(), H);
      packed_product<T>(ne, u_f, {d_forget.data() + lv.e0 * H, H, 0, H}, d_edge.data(), H);
    } else {
      packed_product<T>(m, u_rec, {dgh.data() + (lv.r0 - r_inner) * gh_width, gh_width, 0, gh_width},
                        d_in.data(), in_width);
    }
    parallel_for(m, (ne / m + 1) * H * 2, [&](long b0, long b1) {
      for (long r = lv.r0 + b0; r < lv.r0 + b1; ++r) {
        const long eb = f.child_offsets[r];
        for (long e = eb; e < f.child_offsets[r + 1]; ++e) {
          T* dst = dh.data() + f.child_rows[e] * H;
          if (N) {
            add_into(dst, d_in.data() + (r - lv.r0) * in_width + (e - eb) * H, H);
          } else {
            add_into(dst, d_in.data() + (r - lv.r0) * H, H);    // through h~ = sum_k h_k
            add_into(dst, d_edge.data() + (e - lv.e0) * H, H);  // through f_k
          }
        }
      }
    });
  }

  // Weight gradients.
  Buffer<T> h_in(inner * in_width, false);
  gather_children(f, r_inner, n, H, N, s.h.data(), h_in.data());
  if (!N) {
    Buffer<T> h_edge(E * H, false);
    permute_rows(s.h.data(), f.child_rows.data(), h_edge.data(), nullptr, E, H);
    const T* dgx_inner = dgx.data() + r_inner * G;
    parallel_gemm<T>(true, false, H, H, inner, T(1), dgx_inner, G, h_in.data(), H, T(0), g.dw_hh, H);
    parallel_gemm<T>(true, false, H, H, E, T(1), d_forget.data(), H, h_edge.data(), H, T(0),
            g.dw_hh + H * H, H);
    parallel_gemm<T>(true, false, 2 * H, H, inner, T(1), dgx_inner + 2 * H, G, h_in.data(), H, T(0),
            g.dw_hh + 2 * H * H, H);
    // b_hh enters exactly where b_ih does: db_hh is db_ih, summed once below.
  } else {
    parallel_gemm<T>(true, false, gh_width, in_width, inner, T(1), dgh.data(), gh_width,
                     h_in.data(), in_width, T(0), g.dw_hh, in_width);
  }

  // The x side. The projection took the input nodes' rows of x only (the others are zero), so
  // dW_ih needs only theirs; dx needs every row of x: all nodes' (in node order), or, with
  // input_nodes, the input nodes' alone.
  const std::vector<long>& inputs = s.inputs;
  const long k = long(inputs.size());
  Buffer<T> dgx_nodes, dgx_rows, x_rows;
  if (!a.input_nodes) {
    dgx_nodes = Buffer<T>(n * G, false);
    permute_rows(dgx.data(), nullptr, dgx_nodes.data(), f.order.data(), n, G);
    parallel_gemm<T>(false, false, n, I, G, T(1), dgx_nodes.data(), G, a.w_ih, ld_x, T(0), g.dx, ld_x);
  }
  const T* dg_in = dgx_nodes.data();  // the input nodes' rows of dgx and of x, in input order
  const T* x_in = a.x;
  if (a.input_nodes || k < n) {  // else every node has input: inputs[j] == j
    std::vector<long> rows(k);
    for (long j = 0; j < k; ++j) rows[j] = f.row_of[inputs[j]];
    dgx_rows = Buffer<T>(k * G, false);
    permute_rows(dgx.data(), rows.data(), dgx_rows.data(), nullptr, k, G);
    dg_in = dgx_rows.data();
    if (!a.input_nodes) {
      x_rows = Buffer<T>(k * ld_x, false);
      permute_rows(a.x, inputs.data(), x_rows.data(), nullptr, k, I);
      x_in = x_rows.data();
    }
  }
  if (a.input_nodes)
    parallel_gemm<T>(false, false, k, I, G, T(1), dg_in, G, a.w_ih, ld_x, T(0), g.dx, ld_x);
  parallel_gemm<T>(true, false, G, I, k, T(1), dg_in, G, x_in, ld_x, T(0), g.dw_ih, ld_x);
  // The biases, summed over rows (the order does not matter). b_hh enters where b_ih does, but
  // for N-ary b_hh's f_k, which each child has its own of: summed over the rows with children.
  if (!g.db_ih) return;
  column_sums(dgx.data(), n, G, G, g.db_ih);
  if (!g.db_hh) return;
  if (!N) {
    std::memcpy(g.db_hh, g.db_ih, G * sizeof(T));
    return;
  }
  std::memcpy(g.db_hh, g.db_ih, H * sizeof(T));                         // i
  column_sums(dgh.data() + H, inner, N * H, gh_width, g.db_hh + H);     // f_1 .. f_N
  std::memcpy(g.db_hh + (1 + N) * H, g.db_ih + 2 * H, 2 * H * sizeof(T));  // u, o
}

}  // namespace

template <typename T>
void tree_forward(const TreeForward<T>& a) {
  forward(a);
}

template <typename T>
void tree_backward(const TreeBackward<T>& g) {
  backward(g);
}

template void tree_forward<float>(const TreeForward<float>&);
template void tree_forward<double>(const TreeForward<double>&);
template void tree_backward<float>(const TreeBackward<float>&);
template void tree_backward<double>(const TreeBackward<double>&);

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
