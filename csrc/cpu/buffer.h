// Scratch memory of the CPU kernels. Large buffers are asked for in transparent huge pages: a fresh
// 16 MB buffer in 4 KB pages costs thousands of page faults, as much time as the kernel using it.
#pragma once

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace fastrnn {

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  // n values, set to zero when `zero`, else left as they come.
  explicit Buffer(std::size_t n, bool zero = true) : size_(n) {
    const std::size_t bytes = n * sizeof(T), huge = std::size_t(2) << 20;
    if (n == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, bytes >= huge ? huge : 64, bytes) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    if (bytes >= huge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    if (zero) std::memset(p, 0, bytes);
    data_ = static_cast<T*>(p);
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
  ~Buffer() { std::free(data_); }

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
