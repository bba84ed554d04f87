// Scratch memory of the CPU kernels. Large buffers are asked for in transparent huge pages: a fresh
// 16 MB buffer in 4 KB pages costs thousands of page faults, as much time as the kernel using it.
// Freed large blocks are kept for the next call (see scratch_take), so that a training loop does
// not fault in its scratch memory again on every step. The bindings' large output arrays come
// from the same blocks (bind_util.h new_array).
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>

namespace fastrnn {

// A block of at least `bytes` (aligned to 64 bytes, to 2 MiB from 2 MiB on), reused from the
// cache where one of a fitting size is there. Throws std::bad_alloc.
void* scratch_take(std::size_t bytes);
// Gives back a block from scratch_take: kept for reuse while the cache holds at most its limit
// (FASTRNN_SCRATCH_MB, default 256; 0 keeps nothing), else freed.
void scratch_give(void* p, std::size_t bytes);
// Whether blocks of `bytes` are kept for reuse when given back (smaller ones come fast enough
// from malloc's own free lists).
bool scratch_cached(std::size_t bytes);
// Frees every kept block.
void scratch_release();
// Bytes each cache of the CPU kernels may keep between calls: FASTRNN_SCRATCH_MB MiB (default
// 256; 0 keeps nothing). Read once.
std::size_t scratch_limit();

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  // n values, set to zero when `zero`, else left as they come.
  explicit Buffer(std::size_t n, bool zero = true) : size_(n) {
    if (n == 0) return;
    data_ = static_cast<T*>(scratch_take(n * sizeof(T)));
    if (zero) std::memset(data_, 0, n * sizeof(T));
  }
  Buffer(Buffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  Buffer& operator=(Buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (data_) scratch_give(data_, size_ * sizeof(T));
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace fastrnn
