// A small SIMD value type for the cell headers, compiled once per instruction set: the build
// compiles each kernel source with FASTRNN_SIMD_BYTES = 64 (AVX-512), 32 (AVX2+FMA) or 16 (base),
// and the matching -m flags, inside a namespace of its own (see dispatch.cpp).
//
// Vec<T> behaves like a scalar in the cell code: arithmetic, and the overloads fr_exp, fr_tanh,
// fr_sigmoid, fr_relu, fr_relu_grad found by argument-dependent lookup. exp and tanh are our own
// polynomial kernels, accurate to a few ulp in float32 and float64, propagating NaN and saturating
// at +-Inf as the scalar functions do.
#pragma once

#include <cstdint>
#include <cstring>

#include "../cells/common.h"

#ifndef FASTRNN_ISA
#define FASTRNN_ISA base
#endif
#ifndef FASTRNN_SIMD_BYTES
#define FASTRNN_SIMD_BYTES 16
#endif

namespace fastrnn {
namespace FASTRNN_ISA {

template <typename T>
struct IntOf;
template <>
struct IntOf<float> {
  using type = std::int32_t;
};
template <>
struct IntOf<double> {
  using type = std::int64_t;
};

template <typename T>
struct Vec {
  static constexpr int width = FASTRNN_SIMD_BYTES / sizeof(T);
  typedef T raw __attribute__((vector_size(FASTRNN_SIMD_BYTES)));
  typedef typename IntOf<T>::type int_t;
  typedef int_t iraw __attribute__((vector_size(FASTRNN_SIMD_BYTES)));

  raw v;

  Vec() = default;
  // Broadcast; implicit so that `1 - x` reads as in the scalar code. (s - 0 is s for every s,
  // -0 and NaN included, and compiles to a single broadcast.)
  Vec(T s) : v(s - raw{}) {}
  static Vec from(raw r) {
    Vec out;
    out.v = r;
    return out;
  }
  static Vec load(const T* p) {
    Vec out;
    std::memcpy(&out.v, p, sizeof(raw));
    return out;
  }
  void store(T* p) const { std::memcpy(p, &v, sizeof(raw)); }

  friend Vec operator+(Vec a, Vec b) { return from(a.v + b.v); }
  friend Vec operator-(Vec a, Vec b) { return from(a.v - b.v); }
  friend Vec operator*(Vec a, Vec b) { return from(a.v * b.v); }
  friend Vec operator/(Vec a, Vec b) { return from(a.v / b.v); }
  friend Vec operator-(Vec a) { return from(-a.v); }
  Vec& operator+=(Vec b) { v += b.v; return *this; }

  FASTRNN_HD friend Vec fr_exp(Vec x) { return from(vexp(x.v)); }
  FASTRNN_HD friend Vec fr_tanh(Vec x) { return from(vtanh(x.v)); }
  FASTRNN_HD friend Vec fr_sigmoid(Vec x) { return from(raw{} + T(1) / (T(1) + vexp(-x.v))); }
  FASTRNN_HD friend Vec fr_relu(Vec x) { return from(x.v < T(0) ? raw{} : x.v); }
  FASTRNN_HD friend Vec fr_relu_grad(Vec h, Vec dh) { return from(h.v > T(0) ? dh.v : raw{}); }

  // exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2; Taylor polynomial for exp(r).
  FASTRNN_HD static raw vexp(raw x) {
    constexpr bool f32 = sizeof(T) == 4;
    const T hi = f32 ? T(88.3) : T(708.0);
    const T lo = f32 ? T(-87.0) : T(-708.0);
    x = x > hi ? raw{} + hi : x;  // comparisons are false for NaN: NaN passes through
    x = x < lo ? raw{} + lo : x;
    const T log2e = T(1.4426950408889634);
    const T ln2_hi = f32 ? T(0.693359375) : T(0.6931471803691238);
    const T ln2_lo = f32 ? T(-2.12194440e-4) : T(1.9082149292705877e-10);
    const T round_magic = f32 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^mantissa
    raw n = (x * log2e + round_magic) - round_magic;
    raw r = x - n * ln2_hi - n * ln2_lo;
    // 1/k! for k = 13 .. 0; float32 needs terms up to r^7.
    static constexpr T coef[14] = {
        T(1.0 / 6227020800.0), T(1.0 / 479001600.0), T(1.0 / 39916800.0), T(1.0 / 3628800.0),
        T(1.0 / 362880.0),     T(1.0 / 40320.0),     T(1.0 / 5040.0),     T(1.0 / 720.0),
        T(1.0 / 120.0),        T(1.0 / 24.0),        T(1.0 / 6.0),        T(0.5),
        T(1.0),                T(1.0)};
    constexpr int first = f32 ? 6 : 0;
    raw p = raw{} + coef[first];
    for (int k = first + 1; k < 14; ++k) p = p * r + coef[k];
    constexpr int mant = f32 ? 23 : 52;
    constexpr int_t bias = f32 ? 127 : 1023;
    iraw e = (__builtin_convertvector(n, iraw) + bias) << mant;
    raw scale;
    std::memcpy(&scale, &e, sizeof(raw));
    return p * scale;
  }

  // tanh: an odd Taylor series near 0 (no cancellation), 1 - 2/(exp(2|x|) + 1) elsewhere.
  FASTRNN_HD static raw vtanh(raw x) {
    raw ax = x < T(0) ? -x : x;
    raw big = T(1) - T(2) / (vexp(ax + ax) + T(1));
    raw x2 = x * x;
    raw small = x + x * x2 * tanh_series(x2);
    return ax < T(0.3) ? small : (x < T(0) ? -big : big);  // NaN: big is NaN
  }

  // tanh x = x + x^3 * tanh_series(x^2), from the coefficients of x^3, x^5, ..., x^25 (Bernoulli
  // numbers). For |x| < 0.3 each term is < 0.04 of the last: 6 terms reach float32 precision,
  // 12 reach float64's.
  FASTRNN_HD static raw tanh_series(raw x2) {
    constexpr bool f32 = sizeof(T) == 4;
    static constexpr T c[12] = {T(-0.3333333333333333),   T(0.13333333333333333),
                                T(-0.05396825396825397),  T(0.021869488536155203),
                                T(-0.008863235529902197), T(0.003592128036572481),
                                T(-0.0014558343870513183), T(0.000590027440945586),
                                T(-0.00023912911424355248), T(9.691537956929451e-05),
                                T(-3.927832388331683e-05), T(1.5918905069328964e-05)};
    constexpr int terms = f32 ? 6 : 12;
    raw p = raw{} + c[terms - 1];
    for (int k = terms - 2; k >= 0; --k) p = p * x2 + c[k];
    return p;
  }
};

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
