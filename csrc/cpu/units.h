// Loops over the hidden units of one row in SIMD vectors, calling a cell function written once for
// any value type (see csrc/cells). The last vector may be partial: its loads fill the missing
// lanes with zeros and its stores leave them alone, so that no unit takes a scalar path (a scalar
// tanh per unit costs as much as a vector of them). Compiled once per instruction set.
#pragma once

#include <algorithm>
#include <cstring>

#include "simd.h"

namespace fastrnn {
namespace FASTRNN_ISA {

// `lanes` units from j on, as one Vec<T>.
template <typename T>
struct Unit {
  using type = Vec<T>;
  long lanes;

  Vec<T> load(const T* p) const {
    if (lanes == Vec<T>::width) return Vec<T>::load(p);
    T tmp[Vec<T>::width] = {};
    std::memcpy(tmp, p, lanes * sizeof(T));
    return Vec<T>::load(tmp);
  }
  void store(T* p, Vec<T> v) const {
    if (lanes == Vec<T>::width) return v.store(p);
    T tmp[Vec<T>::width];
    v.store(tmp);
    std::memcpy(p, tmp, lanes * sizeof(T));
  }
};

// body(Unit<T>{lanes}, j) for j = 0, W, 2W, ... < n.
template <typename T, typename Body>
inline void for_each_unit(long n, Body&& body) {
  constexpr long W = Vec<T>::width;
  for (long j = 0; j < n; j += W) body(Unit<T>{std::min(W, n - j)}, j);
}

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
