// The schedule of a batch of trees (a forest), computed once from the parent array in O(nodes)
// and shared by every Tree-LSTM call on it, CPU and CUDA.
//
// Nodes are processed by height (0 = leaf, a parent's height is one more than its highest child),
// so every node of a level has all its children in earlier levels. The kernels work in "rows":
// the nodes sorted by height, then by node index, so that a level is a contiguous block of rows
// and its GEMMs read and write contiguous memory. Children are stored by row too, each parent's
// in increasing node index (the N-ary Tree-LSTM's positions 1..N), so that the children (the
// "edges") of a level are also one contiguous block.
#pragma once

#include <vector>

namespace fastrnn {

struct Forest {
  long n_nodes = 0, n_trees = 0, n_levels = 0, max_children = 0;
  std::vector<long> parents;        // (n_nodes,) node -> parent node, -1 for a root
  std::vector<long> heights;        // (n_nodes,) node -> height
  std::vector<long> roots;          // (n_trees,) root nodes, increasing
  std::vector<long> order;          // (n_nodes,) row -> node
  std::vector<long> row_of;         // (n_nodes,) node -> row
  std::vector<long> level_offsets;  // (n_levels + 1,) level l is rows level_offsets[l] .. [l+1]
  std::vector<long> child_offsets;  // (n_nodes + 1,) row r's edges: child_offsets[r] .. [r+1]
  std::vector<long> child_rows;     // (n_edges,) the child row of each edge
  long n_edges() const { return n_nodes - n_trees; }
};

// Validates `parents` (indices in [-1, n), no cycles) and builds the schedule. Throws
// std::invalid_argument naming the offending node.
Forest make_forest(const long* parents, long n_nodes);

}  // namespace fastrnn
