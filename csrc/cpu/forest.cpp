#include "forest.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace fastrnn {
namespace {

// A node left unfinished by the height pass lies on a cycle (see make_forest); spell the cycle.
std::string describe_cycle(const long* parents, long start) {
  std::string path = std::to_string(start);
  long j = parents[start];
  for (int steps = 0; j != start && steps < 8; ++steps, j = parents[j])
    path += " -> " + std::to_string(j);
  path += j == start ? " -> " + std::to_string(start) : " -> ...";
  return "parents has a cycle through node " + std::to_string(start) + ": " + path;
}

}  // namespace

Forest make_forest(const long* parents, long n) {
  Forest f;
  f.n_nodes = n;
  f.parents.assign(parents, parents + n);
  std::vector<long> n_children(n, 0);
  for (long j = 0; j < n; ++j) {
    const long p = parents[j];
    if (p < -1 || p >= n)
      throw std::invalid_argument("parents[" + std::to_string(j) + "] = " + std::to_string(p) +
                                  " is not a node index in [0, " + std::to_string(n) +
                                  ") or -1 for a root");
    if (p >= 0) ++n_children[p];
    else f.roots.push_back(j);
  }
  f.n_trees = long(f.roots.size());

  // Heights bottom-up: a node is finished when all its children are (Kahn's order). A node never
  // finished has an unfinished child, and so on downwards; in a graph where each node has one
  // parent that descent can only go round a cycle, so the unfinished nodes are the cycles.
  f.heights.assign(n, 0);
  std::vector<long> pending(n_children), queue;
  queue.reserve(n);
  for (long j = 0; j < n; ++j)
    if (pending[j] == 0) queue.push_back(j);
  for (size_t q = 0; q < queue.size(); ++q) {
    const long j = queue[q], p = parents[j];
    if (p < 0) continue;
    if (f.heights[p] < f.heights[j] + 1) f.heights[p] = f.heights[j] + 1;
    if (--pending[p] == 0) queue.push_back(p);
  }
  if (long(queue.size()) < n) {
    for (long j = 0; j < n; ++j)
      if (pending[j] > 0) throw std::invalid_argument(describe_cycle(parents, j));
  }

  // Rows: a counting sort by height, stable in node index.
  for (long j = 0; j < n; ++j) f.n_levels = std::max(f.n_levels, f.heights[j] + 1);
  f.level_offsets.assign(f.n_levels + 1, 0);
  for (long j = 0; j < n; ++j) ++f.level_offsets[f.heights[j] + 1];
  for (long l = 0; l < f.n_levels; ++l) f.level_offsets[l + 1] += f.level_offsets[l];
  f.order.resize(n);
  f.row_of.resize(n);
  std::vector<long> next(f.level_offsets.begin(), f.level_offsets.end() - 1);
  for (long j = 0; j < n; ++j) {
    const long r = next[f.heights[j]]++;
    f.order[r] = j;
    f.row_of[j] = r;
  }

  // Edges by parent row; visiting children in increasing node index keeps them in that order.
  f.child_offsets.assign(n + 1, 0);
  for (long r = 0; r < n; ++r) {
    f.child_offsets[r + 1] = f.child_offsets[r] + n_children[f.order[r]];
    f.max_children = std::max(f.max_children, n_children[f.order[r]]);
  }
  f.child_rows.resize(f.n_edges());
  std::vector<long> fill(f.child_offsets.begin(), f.child_offsets.end() - 1);
  for (long j = 0; j < n; ++j)
    if (parents[j] >= 0) f.child_rows[fill[f.row_of[parents[j]]]++] = f.row_of[j];
  return f;
}

}  // namespace fastrnn
