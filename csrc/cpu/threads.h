// Threads of the CPU kernels. A kernel runs as one parallel region whose threads each own a
// share of the hidden units (or rows) and meet at a barrier per step; the BLAS is kept to one
// thread and called from inside the region on each thread's share, so that the machine never
// has two thread pools spinning against each other.
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>

#include <omp.h>

#include "blas.h"

namespace fastrnn {

void set_num_threads(int n);  // n >= 1
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

// Waits until done() holds: spins for a few microseconds (a step of the recurrence is that
// short), then yields the core between checks, so that when other load on the machine holds up
// the thread being waited for, the waiting ones do not keep it off a core.
template <typename Done>
void spin_until(Done&& done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// Waits (spin_until) until a counter another thread raises reaches value.
inline void wait_for(const std::atomic<long>& counter, long value) {
  spin_until([&] { return counter.load(std::memory_order_acquire) >= value; });
}

// The barrier of one run_parallel region (waiting with spin_until).
class Barrier {
 public:
  void reset(int threads) {
    threads_ = threads;
    arrived_.store(0);
  }
  void wait();

 private:
  int threads_ = 1;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

inline thread_local Barrier* t_region_barrier = nullptr;

// Runs body(thread, threads) on `threads` threads (fewer if the runtime gives fewer).
template <typename Body>
void run_parallel(int threads, Body&& body) {
  blas_single_threaded();
  if (threads <= 1) {
    body(0, 1);
    return;
  }
  Barrier region_barrier;
#pragma omp parallel num_threads(threads)
  {
#pragma omp single
    region_barrier.reset(omp_get_num_threads());
    t_region_barrier = &region_barrier;
    body(omp_get_thread_num(), omp_get_num_threads());
    t_region_barrier = nullptr;
  }
}

// All threads of the enclosing run_parallel region wait here.
inline void barrier(int threads) {
  if (threads > 1) t_region_barrier->wait();
}

// [begin, end) of n items for part p of `parts`, in multiples of `grain` (the last part takes the
// remainder).
struct Range {
  long begin, end;
  long size() const { return end - begin; }
};
inline Range share(long n, int p, int parts, long grain = 1) {
  const long units = (n + grain - 1) / grain;
  return {std::min(n, units * p / parts * grain), std::min(n, units * (p + 1) / parts * grain)};
}

// Runs body(begin, end) over [0, n) split into contiguous parts, one per thread, when the work
// (n * cost_per_item, in rough flops) is large enough to pay for waking threads.
template <typename Body>
void parallel_for(long n, long cost_per_item, Body&& body) {
  const int threads = n * cost_per_item < (1L << 15) ? 1 : int(std::min<long>(get_num_threads(), n));
  run_parallel(threads, [&](int p, int parts) {
    const Range r = share(n, p, parts);
    body(r.begin, r.end);
  });
}

// The mean time, in nanoseconds, for one thread of a two-thread region to signal the other and
// see its answer (one cache line each way, waited for as the barrier waits), over `rounds`
// exchanges: what a recurrence split over two threads pays at least once a step. NaN when the
// region gets one thread.
double core_round_trip_ns(long rounds);

// The GEMM of blas.h split among the kernels' threads: each takes a share of C's rows (of its
// columns when it has fewer rows than columns), one single-threaded BLAS call each.
template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, long m, long n, long k, T alpha, const T* a,
                   long lda, const T* b, long ldb, T beta, T* c, long ldc) {
  const int threads = m * n * k < (1L << 18) ? 1 : get_num_threads();
  run_parallel(threads, [&](int p, int parts) {
    if (m >= n) {
      const Range r = share(m, p, parts);
      gemm<T>(trans_a, trans_b, r.size(), n, k, alpha, a + (trans_a ? r.begin : r.begin * lda),
              lda, b, ldb, beta, c + r.begin * ldc, ldc);
    } else {
      const Range r = share(n, p, parts);
      gemm<T>(trans_a, trans_b, m, r.size(), k, alpha, a, lda,
              b + (trans_b ? r.begin * ldb : r.begin), ldb, beta, c + r.begin, ldc);
    }
  });
}

}  // namespace fastrnn
