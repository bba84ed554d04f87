// The index maps of a whole network (csrc/cpu/stack.cpp and csrc/cuda/stack_driver.h): the batch
// packed as torch's PackedSequence, and the dropout masks between layers. Host code only, no
// threads; both drivers build the same maps from the same lengths and, for one seed, the same
// masks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace fastrnn {

// Rows sorted by length, longest first (ties in batch order); step t holds the packed rows
// offset[t] .. offset[t] + batch_sizes[t].
struct Packing {
  std::vector<long> order;        // (batch,) the k-th packed sequence is batch row order[k]
  std::vector<long> batch_sizes;  // (steps,)
  std::vector<long> offset;       // (steps + 1,)
  std::vector<long> padded;       // (rows,) packed row -> row t*batch + order[k] of (steps, batch)
  std::vector<long> reversed;     // (rows,) step t -> step length-1-t of the same sequence
  bool plain;                     // every length is `steps`: packed rows are the padded rows
  long rows() const { return offset.back(); }
};

// lengths: (batch,) each in [1, steps]; null: every sequence `steps` long.
inline Packing make_packing(long steps, long batch, const long* lengths) {
  Packing p;
  std::vector<long> len(batch, steps);
  if (lengths) len.assign(lengths, lengths + batch);
  p.order.resize(batch);
  std::iota(p.order.begin(), p.order.end(), 0L);
  std::stable_sort(p.order.begin(), p.order.end(), [&](long a, long b) { return len[a] > len[b]; });
  p.batch_sizes.assign(steps, 0);
  for (long k = 0; k < batch; ++k)
    for (long t = 0; t < len[p.order[k]]; ++t) ++p.batch_sizes[t];
  p.offset.assign(steps + 1, 0);
  for (long t = 0; t < steps; ++t) p.offset[t + 1] = p.offset[t] + p.batch_sizes[t];
  p.padded.resize(p.rows());
  p.reversed.resize(p.rows());
  for (long t = 0; t < steps; ++t) {
    for (long k = 0; k < p.batch_sizes[t]; ++k) {
      const long r = p.offset[t] + k;
      p.padded[r] = t * batch + p.order[k];
      p.reversed[r] = p.offset[len[p.order[k]] - 1 - t] + k;
    }
  }
  p.plain = p.rows() == steps * batch;
  return p;
}

// Inverted dropout: each value kept with probability 1 - p and scaled by 1 / (1 - p). The masks
// of a network come from one generator seeded once, layer after layer.
template <typename U>
std::vector<U> dropout_mask(long n, double p, std::mt19937_64& rng) {
  std::vector<U> mask(n);
  const U keep = p < 1 ? U(1 / (1 - p)) : U(0);
  for (long i = 0; i < n; ++i) {
    const double u = double(rng() >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    mask[i] = u < p ? U(0) : keep;
  }
  return mask;
}

}  // namespace fastrnn
