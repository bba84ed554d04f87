// The kept packed weights of pack_cache.h.
#include "pack_cache.h"

#include <cstring>
#include <iterator>
#include <list>
#include <mutex>

#include "buffer.h"

namespace fastrnn {
namespace {

std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Independent multiply-rotate lanes over 4-byte words, 64 of them in four vectors of 16 (GCC's
// vector types, held in registers: zmm, ymm pairs or xmm quads by the clone chosen at load time;
// the value is the same on each), then the lanes, the tail and the length mixed into 64 bits.
// Each step is a bijection of a lane's state, so a change confined to one lane always changes the
// hash. 0.65 us for 64 KB on a Zen 4 core (the lanes through the stack: 1.6 us).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
std::uint64_t content_hash(const void* p, std::size_t bytes) {
  using Lanes = std::uint32_t __attribute__((vector_size(64)));
  constexpr int kLanes = 64, kPer = 16;
  constexpr std::uint32_t k32 = 0x9E3779B1U;
  constexpr std::uint64_t k1 = 0x9E3779B185EBCA87ULL, k2 = 0xC2B2AE3D27D4EB4FULL;
  std::uint32_t h[kLanes];
  for (int l = 0; l < kLanes; ++l) h[l] = k32 + std::uint32_t(l);
  Lanes h0, h1, h2, h3;  // lanes 0-15, 16-31, 32-47, 48-63
  std::memcpy(&h0, h, sizeof h0);
  std::memcpy(&h1, h + kPer, sizeof h1);
  std::memcpy(&h2, h + 2 * kPer, sizeof h2);
  std::memcpy(&h3, h + 3 * kPer, sizeof h3);
  const auto mix = [](Lanes& v, const unsigned char* words) __attribute__((always_inline)) {
    Lanes w;
    std::memcpy(&w, words, sizeof w);
    const Lanes m = (v ^ w) * k32;
    v = (m << 15) | (m >> 17);
  };
  const unsigned char* c = static_cast<const unsigned char*>(p);
  std::size_t i = 0;
  for (; i + 4 * kLanes <= bytes; i += 4 * kLanes) {
    mix(h0, c + i);
    mix(h1, c + i + 64);
    mix(h2, c + i + 128);
    mix(h3, c + i + 192);
  }
  std::memcpy(h, &h0, sizeof h0);
  std::memcpy(h + kPer, &h1, sizeof h1);
  std::memcpy(h + 2 * kPer, &h2, sizeof h2);
  std::memcpy(h + 3 * kPer, &h3, sizeof h3);
  std::uint64_t out = k2;
  for (int l = 0; l < kLanes; ++l) out = rotl(out ^ (h[l] * k2), 31) * k1;
  for (; i + 8 <= bytes; i += 8) {  // the whole words left
    std::uint64_t w;
    std::memcpy(&w, c + i, 8);
    out = rotl(out ^ (w * k2), 31) * k1;
  }
  std::uint64_t tail = 0;  // the last 0-7 bytes
  std::memcpy(&tail, c + i, bytes - i);
  out ^= (tail * k2) ^ (std::uint64_t(bytes) * k1);
  out ^= out >> 33;
  out *= k2;
  out ^= out >> 29;
  return out;
}

struct Cache {
  std::mutex mutex;
  std::list<std::shared_ptr<PackedWeights>> kept;  // most recently used first
  std::size_t held = 0;
};

// Never destroyed, as the scratch cache it gives blocks back to (buffer.cpp).
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

PackedWeights::~PackedWeights() {
  if (data) scratch_give(data, bytes);
}

std::shared_ptr<PackedWeights> pack_find(const void* source, std::size_t source_bytes,
                                         const std::array<long, 6>& layout, std::size_t bytes,
                                         bool& hit) {
  const std::uint64_t hash = content_hash(source, source_bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto it = c.kept.begin(); it != c.kept.end(); ++it) {
      const PackedWeights& k = **it;
      if (k.hash == hash && k.source_bytes == source_bytes && k.layout == layout && k.bytes == bytes) {
        auto found = *it;
        c.kept.splice(c.kept.begin(), c.kept, it);
        hit = true;
        return found;
      }
    }
  }
  hit = false;
  auto made = std::make_shared<PackedWeights>();
  made->layout = layout;
  made->source = source;
  made->hash = hash;
  made->source_bytes = source_bytes;
  made->bytes = bytes;
  made->data = bytes ? scratch_take(bytes) : nullptr;
  return made;
}

void pack_keep(const std::shared_ptr<PackedWeights>& packed) {
  Cache& c = cache();
  std::list<std::shared_ptr<PackedWeights>> dropped;  // freed outside the lock
  std::lock_guard<std::mutex> lock(c.mutex);
  if (packed->bytes > scratch_limit()) return;
  for (auto it = c.kept.begin(); it != c.kept.end();) {
    const PackedWeights& k = **it;
    const bool same_contents = k.hash == packed->hash && k.source_bytes == packed->source_bytes;
    if ((same_contents || k.source == packed->source) && k.layout == packed->layout) {
      c.held -= k.bytes;
      auto next = std::next(it);
      dropped.splice(dropped.end(), c.kept, it);
      it = next;
    } else {
      ++it;
    }
  }
  c.kept.push_front(packed);
  c.held += packed->bytes;
  while (c.kept.size() > 16 || c.held > scratch_limit()) {
    c.held -= c.kept.back()->bytes;
    dropped.splice(dropped.end(), c.kept, std::prev(c.kept.end()));
  }
}

void pack_release() {
  Cache& c = cache();
  std::list<std::shared_ptr<PackedWeights>> dropped;
  std::lock_guard<std::mutex> lock(c.mutex);
  dropped.swap(c.kept);
  c.held = 0;
}

}  // namespace fastrnn
