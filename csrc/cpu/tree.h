// Tree-LSTM over a forest on the CPU: the level loop around the cell of csrc/cells/tree_lstm.h.
// All buffers but the caller's x, h, c, dh, dc, dx are in the forest's row order (forest.h).
#pragma once

#include <vector>

#include "buffer.h"
#include "forest.h"

namespace fastrnn {

// What backward needs from a training-mode forward, by row.
template <typename T>
struct TreeSaved {
  Buffer<T> gates;   // (n, 4H) activated i, -, u, o (the f slot unused)
  Buffer<T> forget;  // (edges, H) the forget gate of each edge (child)
  Buffer<T> c, h;    // (n, H)
  std::vector<long> inputs;  // the nodes with an input: TreeForward::input_nodes, or else those
                             // whose row of x is not all zero, in node order
};

template <typename T>
struct TreeForward {
  const Forest* forest;
  long arity;              // 0: Child-Sum; N > 0: N-ary (every node has at most N children)
  long input, hidden;
  const T* x;              // (n_nodes, input), node order; with input_nodes (n_inputs, input)
  const long* input_nodes; // null: x has a row per node; else x's rows are these nodes' (distinct)
  long n_inputs;
  const T *w_ih, *w_hh;    // (4H, I); Child-Sum (4H, H), N-ary ((3+N)H, N*H)
  const T *b_ih, *b_hh;    // (4H,); Child-Sum (4H,), N-ary ((3+N)H,); both null: no bias
  T *h, *c;                // (n_nodes, hidden), node order
  TreeSaved<T>* saved;     // training: filled for backward; null: inference
};

template <typename T>
struct TreeBackward {
  const TreeForward<T>* fwd;  // the training-mode forward (fwd->saved filled)
  const T *dh, *dc;           // (n_nodes, hidden), node order; null: zeros
  T* dx;                      // shaped as x: (n_nodes, input), or (n_inputs, input)
  T *dw_ih, *dw_hh;           // shaped as w_ih, w_hh; written, not accumulated
  T *db_ih, *db_hh;           // null: no bias
};

// Entry points: dispatch to the best instruction set (see dispatch.cpp).
template <typename T>
void tree_forward(const TreeForward<T>& args);
template <typename T>
void tree_backward(const TreeBackward<T>& args);

}  // namespace fastrnn
