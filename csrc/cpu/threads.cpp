#include "threads.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <stdexcept>

#include "blas.h"

namespace fastrnn {
namespace {

int cpus_available() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return 1;
}

std::atomic<int> g_threads{0};  // 0: not yet chosen
thread_local int t_share = 0;    // 0: no ThreadShare on this thread

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1");
  g_threads = n;
  blas_set_num_threads(1);  // the kernels split the GEMMs among their own threads
}

int get_num_threads() {
  if (t_share > 0) return t_share;
  int n = g_threads.load();
  if (n == 0) {
    n = cpus_available();
    set_num_threads(n);
  }
  return n;
}

ThreadShare::ThreadShare(int n) : previous_(t_share) { t_share = std::max(1, n); }
ThreadShare::~ThreadShare() { t_share = previous_; }

void Barrier::wait() {
  const unsigned generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    return;
  }
  spin_until([&] { return generation_.load(std::memory_order_acquire) != generation; });
}

double core_round_trip_ns(long rounds) {
  struct alignas(64) Line {
    std::atomic<long> value{0};
  };
  Line ping, pong;
  double ns = std::numeric_limits<double>::quiet_NaN();
  run_parallel(2, [&](int p, int parts) {
    if (parts < 2) return;
    barrier(parts);
    const auto start = std::chrono::steady_clock::now();
    for (long i = 1; i <= rounds; ++i) {
      if (p == 0) {
        ping.value.store(i, std::memory_order_release);
        wait_for(pong.value, i);
      } else {
        wait_for(ping.value, i);
        pong.value.store(i, std::memory_order_release);
      }
    }
    if (p == 0)
      ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
           double(std::max(1L, rounds));
  });
  return ns;
}

}  // namespace fastrnn
