// The cache of scratch blocks behind Buffer (buffer.h).
#include "buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace fastrnn {
namespace {

constexpr std::size_t kHuge = std::size_t(2) << 20;
// Smaller blocks come fast enough from malloc's own free lists.
constexpr std::size_t kCachedFrom = std::size_t(256) << 10;

struct Block {
  void* p;
  std::size_t bytes;
};

struct Cache {
  std::mutex mutex;
  std::vector<Block> blocks;  // oldest first
  std::size_t held = 0;
};

// Never destroyed: blocks are handed back from destructors that may run at exit after a static
// cache would have been (the order of static destruction across files is unspecified).
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

// Rounded up so that blocks of nearly the same size are interchangeable.
std::size_t rounded(std::size_t bytes) {
  const std::size_t unit = bytes >= kHuge ? kHuge : 4096;
  return (bytes + unit - 1) / unit * unit;
}

}  // namespace

std::size_t scratch_limit() {
  static const std::size_t limit = [] {
    const char* env = std::getenv("FASTRNN_SCRATCH_MB");
    const long mb = env ? std::strtol(env, nullptr, 10) : 256;
    return std::size_t(mb > 0 ? mb : 0) << 20;
  }();
  return limit;
}

bool scratch_cached(std::size_t bytes) { return bytes >= kCachedFrom; }

void* scratch_take(std::size_t bytes) {
  if (scratch_cached(bytes)) {
    bytes = rounded(bytes);
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    // The smallest kept block that fits without wasting more than half of it.
    std::size_t best = c.blocks.size();
    for (std::size_t i = 0; i < c.blocks.size(); ++i) {
      const std::size_t have = c.blocks[i].bytes;
      if (have >= bytes && have / 2 <= bytes && (best == c.blocks.size() || have < c.blocks[best].bytes))
        best = i;
    }
    if (best < c.blocks.size()) {
      void* p = c.blocks[best].p;
      c.held -= c.blocks[best].bytes;
      c.blocks.erase(c.blocks.begin() + long(best));
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, bytes >= kHuge ? kHuge : 64, bytes) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  if (bytes >= kHuge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

void scratch_give(void* p, std::size_t bytes) {
  if (!scratch_cached(bytes)) {
    std::free(p);
    return;
  }
  bytes = rounded(bytes);
  Cache& c = cache();
  std::vector<void*> freed;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (bytes > scratch_limit()) {
      freed.push_back(p);
    } else {
      c.blocks.push_back({p, bytes});
      c.held += bytes;
      while (c.held > scratch_limit()) {  // the oldest go first
        freed.push_back(c.blocks.front().p);
        c.held -= c.blocks.front().bytes;
        c.blocks.erase(c.blocks.begin());
      }
    }
  }
  for (void* q : freed) std::free(q);
}

void scratch_release() {
  Cache& c = cache();
  std::vector<Block> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.blocks);
    c.held = 0;
  }
  for (const Block& b : blocks) std::free(b.p);
}

}  // namespace fastrnn
