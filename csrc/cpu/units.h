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

// n <= W values at p as one vector (zeros past n), and back (the lanes past n left alone).
template <typename T>
inline Vec<T> load_n(const T* p, long n) {
  if (n == Vec<T>::width) return Vec<T>::load(p);
  T tmp[Vec<T>::width] = {};
  std::memcpy(tmp, p, n * sizeof(T));
  return Vec<T>::load(tmp);
}

template <typename T>
inline void store_n(T* p, Vec<T> v, long n) {
  if (n == Vec<T>::width) return v.store(p);
  T tmp[Vec<T>::width];
  v.store(tmp);
  std::memcpy(p, tmp, n * sizeof(T));
}

// `lanes` units from j on, as one Vec<T>.
template <typename T>
struct Unit {
  using type = Vec<T>;
  long lanes;

  Vec<T> load(const T* p) const { return load_n(p, lanes); }
  void store(T* p, Vec<T> v) const { store_n(p, v, lanes); }
};

// body(Unit<T>{lanes}, j) for j = 0, W, 2W, ... < n.
template <typename T, typename Body>
inline void for_each_unit(long n, Body&& body) {
  constexpr long W = Vec<T>::width;
  for (long j = 0; j < n; j += W) body(Unit<T>{std::min(W, n - j)}, j);
}

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
