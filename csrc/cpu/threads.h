// Threads of the CPU kernels: one setting for the kernels' own loops and the BLAS.
#pragma once

#include <algorithm>

namespace fastrnn {

void set_num_threads(int n);  // n >= 1; also sets the BLAS's threads
int get_num_threads();          // the calling thread's share while a ThreadShare is alive

// While alive, get_num_threads() on the constructing thread returns n: for work that runs beside
// other work (the two directions of a layer), each taking a share of the threads.
class ThreadShare {
 public:
  explicit ThreadShare(int n);
  ~ThreadShare();
  ThreadShare(const ThreadShare&) = delete;
  ThreadShare& operator=(const ThreadShare&) = delete;

 private:
  int previous_;
};

// Runs body(begin, end) over [0, n) split into contiguous parts, one per thread, when the work
// (n * cost_per_item, in rough flops) is large enough to pay for waking threads.
template <typename Body>
void parallel_for(long n, long cost_per_item, Body&& body) {
  const int threads = get_num_threads();
  const long min_work = 1L << 15;
  if (threads <= 1 || n < 2 || n * cost_per_item < min_work) {
    body(0L, n);
    return;
  }
  const int parts = int(std::min<long>(threads, n));
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) {
    const long begin = n * p / parts, end = n * (p + 1) / parts;
    body(begin, end);
  }
}

}  // namespace fastrnn
