// The one kernel shape of the CUDA code: a grid-stride loop that calls a per-thread function
// (pointwise.cuh) for every index in [0, n), launched on the caller's stream.
#pragma once

#include <algorithm>

#include "cublas.h"

namespace fastrnn {
namespace gpu {

constexpr int kThreads = 256;

template <typename F>
__global__ void __launch_bounds__(kThreads) each_kernel(F f, long n) {
  const long stride = static_cast<long>(gridDim.x) * blockDim.x;
  for (long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <typename F>
void each(cudaStream_t stream, long n, const F& f) {
  if (n <= 0) return;
  const long blocks = std::min<long>((n + kThreads - 1) / kThreads, 1L << 20);
  each_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(f, n);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace gpu
}  // namespace fastrnn
