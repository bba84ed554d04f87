// Loops over the hidden units of one row, in SIMD vectors and then a scalar tail, calling a cell
// function written once for any value type (see csrc/cells). Compiled once per instruction set.
#pragma once

#include <type_traits>

#include "simd.h"

namespace fastrnn {
namespace FASTRNN_ISA {

template <typename U>
struct Unit {
  using type = U;
};

template <typename U, typename T>
inline U load(const T* p) {
  if constexpr (std::is_same_v<U, T>) return *p;
  else return U::load(p);
}

template <typename U, typename T>
inline void store(T* p, U value) {
  if constexpr (std::is_same_v<U, T>) *p = value;
  else value.store(p);
}

// body(Unit<U>{}, j) for j = 0, W, 2W, ... with U = Vec<T> (W lanes), then U = T for the tail.
template <typename T, typename Body>
inline void for_each_unit(long n, Body&& body) {
  constexpr long W = Vec<T>::width;
  long j = 0;
  for (; j + W <= n; j += W) body(Unit<Vec<T>>{}, j);
  for (; j < n; ++j) body(Unit<T>{}, j);
}

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
