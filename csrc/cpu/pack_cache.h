// Weights repacked for the panels (sequence.cpp), kept between calls and found again by the
// contents of their source: an inference loop, or backward after forward, repacks nothing. The
// source is recognised by a 64-bit hash of all its bytes, its size and the layout asked for, so
// an array changed in place, or a new array at an old address, is a miss.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace fastrnn {

struct PackedWeights {
  std::array<long, 6> layout;  // the caller's description of the packed layout
  const void* source = nullptr; // where the source was: a newer packing of it replaces this one
  std::uint64_t hash = 0;      // of the source's bytes
  std::size_t source_bytes = 0;
  std::size_t bytes = 0;
  void* data = nullptr;        // the packed values
  ~PackedWeights();
};

// The packed copy of `source` (source_bytes bytes) in `layout`: a kept one (hit = true), or a new
// block of `bytes` for the caller to fill (hit = false), which it hands to pack_keep when filled.
std::shared_ptr<PackedWeights> pack_find(const void* source, std::size_t source_bytes,
                                         const std::array<long, 6>& layout, std::size_t bytes,
                                         bool& hit);
// Keeps a block from pack_find, filled, for later calls, in place of any packing of the same
// source address and layout (weights updated in place by a training loop leave one block, not
// one per step); the least recently used go first beyond 16 blocks or FASTRNN_SCRATCH_MB MiB.
void pack_keep(const std::shared_ptr<PackedWeights>& packed);
// Forgets every kept block.
void pack_release();

}  // namespace fastrnn
