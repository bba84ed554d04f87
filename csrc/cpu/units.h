// Loops over the hidden units of one row in SIMD vectors, calling a cell function written once for
// any value type (see csrc/cells). The last vector may be partial: its loads fill the missing
// lanes with zeros and its stores leave them alone, so that no unit takes a scalar path (a scalar
// tanh per unit costs as much as a vector of them). Compiled once per instruction set.
#pragma once

#include <algorithm>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "simd.h"

namespace fastrnn {
namespace FASTRNN_ISA {

#if defined(__AVX2__) && !defined(__AVX512F__)
// The AVX2 mask of lanes 0 .. n - 1 (each lane's top bit), for vectors of T.
template <typename T>
inline __m256i lanes_below(long n) {
  if constexpr (sizeof(T) == 4)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  else
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif

// n <= W values at p as one vector (zeros past n), and back (the lanes past n left alone). With
// AVX-512 or AVX2 a masked load or store, which touches no memory past n; else through a vector
// on the stack (its narrow copy then wide load stalls on store forwarding, some 20 cycles).
template <typename T>
inline Vec<T> load_n(const T* p, long n) {
  if (n == Vec<T>::width) return Vec<T>::load(p);
  Vec<T> out;
#if defined(__AVX512F__)
  const auto mask = static_cast<__mmask16>((1u << n) - 1);
  if constexpr (sizeof(T) == 4) out.v = (typename Vec<T>::raw)_mm512_maskz_loadu_ps(mask, p);
  else out.v = (typename Vec<T>::raw)_mm512_maskz_loadu_pd(static_cast<__mmask8>(mask), p);
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) out.v = (typename Vec<T>::raw)_mm256_maskload_ps(p, lanes_below<T>(n));
  else out.v = (typename Vec<T>::raw)_mm256_maskload_pd(p, lanes_below<T>(n));
#else
  T tmp[Vec<T>::width] = {};
  std::memcpy(tmp, p, n * sizeof(T));
  out = Vec<T>::load(tmp);
#endif
  return out;
}

template <typename T>
inline void store_n(T* p, Vec<T> v, long n) {
  if (n == Vec<T>::width) return v.store(p);
#if defined(__AVX512F__)
  const auto mask = static_cast<__mmask16>((1u << n) - 1);
  if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, mask, (__m512)v.v);
  else _mm512_mask_storeu_pd(p, static_cast<__mmask8>(mask), (__m512d)v.v);
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) _mm256_maskstore_ps(p, lanes_below<T>(n), (__m256)v.v);
  else _mm256_maskstore_pd(p, lanes_below<T>(n), (__m256d)v.v);
#else
  T tmp[Vec<T>::width];
  v.store(tmp);
  std::memcpy(p, tmp, n * sizeof(T));
#endif
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
