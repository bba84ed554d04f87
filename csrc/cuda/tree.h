// Tree-LSTM over a forest on a CUDA device: the arguments of the level loop in tree_driver.h. The
// schedule is csrc/cpu/forest.h's, computed on the host and passed as its arrays (host memory);
// the driver uploads what the kernels index with. Every other pointer is device memory. T stored,
// A arithmetic as in layer.h; x, h, c, dh, dc, dx are in node order.
#pragma once

#include <memory>

#include "layer.h"  // CudaError

namespace fastrnn {
namespace gpu {

// The host arrays of a fastrnn::Forest (forest.h) that the kernels need.
struct TreeSchedule {
  long n_nodes, n_levels;
  const long* order;          // (n_nodes,) row -> node
  const long* level_offsets;  // (n_levels + 1,)
  const long* child_offsets;  // (n_nodes + 1,) by row
  const long* child_rows;     // (n_nodes - n_trees,) edges by parent row
  long n_edges() const { return n_nodes ? child_offsets[n_nodes] : 0; }
};

template <typename T>
struct TreeForwardArgs {
  TreeSchedule forest;
  long arity;              // 0: Child-Sum; N > 0: N-ary (no node has more than N children)
  long input, hidden;
  const T* x;              // (n_nodes, input)
  const T *w_ih, *w_hh;    // (4H, I); Child-Sum (4H, H), N-ary ((3+N)H, N*H)
  const T *b_ih, *b_hh;    // (4H,); (4H,) or ((3+N)H,); both null: no bias
  T *h, *c;                // (n_nodes, hidden)
  bool training;           // keep what backward needs
};

template <typename T, typename A>
struct TreeBackwardArgs {
  const T *dh, *dc;   // (n_nodes, hidden); null: zeros
  T* dx;              // (n_nodes, input)
  A *dw_ih, *dw_hh;   // shaped as w_ih, w_hh; written, not accumulated
  A *db_ih, *db_hh;   // null: no bias
};

// What a training forward keeps for backward, in device memory; opaque here (tree.cu).
struct TreeHandle {
  virtual ~TreeHandle() = default;
};

// Run on `stream` of the current device and return without waiting. tree_forward returns the
// state for tree_backward in training mode, else null; the caller's x and weights must outlive it.
// Errors throw CudaError. Instantiated for (T, A) as layer.h's entry points.
template <typename T, typename A>
std::shared_ptr<TreeHandle> tree_forward(const TreeForwardArgs<T>& args, CUstream_st* stream);
template <typename T, typename A>
void tree_backward(TreeHandle& state, const TreeBackwardArgs<T, A>& args, CUstream_st* stream);

}  // namespace gpu
}  // namespace fastrnn
