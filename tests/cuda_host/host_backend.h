// The host backend of the CUDA drivers for the host tests (shim.cpp, tree_shim.cpp): each(n, f) a
// plain loop over every index, GEMMs as three plain loops, buffers filled with -7777 so that a
// read before a write shows; and the NumPy array helpers of the shims.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <optional>
#include <vector>

#include "../../csrc/cuda/layer.h"

namespace py = pybind11;

namespace fastrnn {
namespace gpu {

struct HostBackend {
  template <typename U>
  std::vector<U> alloc(long n) {
    return std::vector<U>(n, U(-7777));  // not zero: a read before a write shows
  }
  template <typename U>
  void upload(U* dst, const U* src, long n) {
    if (n > 0) std::memcpy(dst, src, n * sizeof(U));
  }
  template <typename F>
  void each(long n, const F& f) {
    for (long i = 0; i < n; ++i) f(i);
  }
  // The stack driver's layers (stack_driver.h), run by driver.h's loop when that is included.
  template <typename T, typename A>
  void layer_forward(const LayerForward<T, A>& f) {
    run_forward(*this, f);
  }
  template <typename T, typename A>
  void layer_backward(const LayerBackward<T, A>& g) {
    run_backward(*this, g);
  }
  template <typename T, typename C>
  void gemm(bool ta, bool tb, long m, long n, long k, const T* a, long lda, const T* b, long ldb,
            bool accumulate, C* c, long ldc) {
    for (long i = 0; i < m; ++i)
      for (long j = 0; j < n; ++j) {
        C sum = accumulate ? c[i * ldc + j] : C(0);
        for (long p = 0; p < k; ++p)
          sum += C(ta ? a[p * lda + i] : a[i * lda + p]) * C(tb ? b[j * ldb + p] : b[p * ldb + j]);
        c[i * ldc + j] = sum;
      }
  }
};

template <typename T>
using Array = py::array_t<T, py::array::c_style>;
template <typename T>
using Optional = std::optional<Array<T>>;
template <typename T>
const T* ptr(const Optional<T>& a) {
  return a ? a->data() : nullptr;
}
template <typename T>
T* mptr(Optional<T>& a) {
  return a ? a->mutable_data() : nullptr;
}

}  // namespace gpu
}  // namespace fastrnn
