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
  // t = x / ln2 + 1.5 * 2^mantissa + bias holds n + bias in its low bits: shifted into the
  // exponent field, they are 2^n. x is clamped so that n + bias stays a normal exponent.
  // The lowest x vexp and vtanh pass to reduce: 2^n stays a normal number.
  static constexpr T exp_min = sizeof(T) == 4 ? T(-87.0) : T(-708.0);

  FASTRNN_HD static raw vexp(raw x) {
    constexpr bool f32 = sizeof(T) == 4;
    const raw hi = raw{} + (f32 ? T(88.3) : T(708.0));
    const raw lo = raw{} + exp_min;
    x = hi < x ? hi : x;  // comparisons are false for NaN: NaN passes through
    x = lo > x ? lo : x;
    raw r, scale;
    reduce(x, r, scale);
    // float32 needs terms up to r^7.
    return taylor<f32 ? 7 : 13, 0>(r) * scale;
  }

  // sum over k = lo .. hi of r^(k - lo) / k!, by Horner from the highest term.
  template <int hi, int lo>
  FASTRNN_HD static raw taylor(raw r) {
    static constexpr T inv_factorial[15] = {
        T(1.0),           T(1.0),           T(0.5),             T(1.0 / 6.0),
        T(1.0 / 24.0),    T(1.0 / 120.0),   T(1.0 / 720.0),     T(1.0 / 5040.0),
        T(1.0 / 40320.0), T(1.0 / 362880.0), T(1.0 / 3628800.0), T(1.0 / 39916800.0),
        T(1.0 / 479001600.0), T(1.0 / 6227020800.0), T(1.0 / 87178291200.0)};
    static_assert(lo <= hi && hi < 15, "terms up to r^14");
    raw p = raw{} + inv_factorial[hi];
    for (int k = hi - 1; k >= lo; --k) p = p * r + inv_factorial[k];
    return p;
  }

  // x = n ln2 + r, |r| <= ln2 / 2, and scale = 2^n, for x within vexp's clamp.
  FASTRNN_HD static void reduce(raw x, raw& r, raw& scale) {
    constexpr bool f32 = sizeof(T) == 4;
    const T log2e = T(1.4426950408889634);
    const T ln2_hi = f32 ? T(0.693359375) : T(0.6931471803691238);
    const T ln2_lo = f32 ? T(-2.12194440e-4) : T(1.9082149292705877e-10);
    const T shift = f32 ? T(12582912.0 + 127) : T(6755399441055744.0 + 1023);
    const raw t = x * log2e + shift;
    const raw n = t - shift;
    r = x - n * ln2_hi - n * ln2_lo;
    iraw e;
    std::memcpy(&e, &t, sizeof(raw));
    e = e << (f32 ? 23 : 52);
    std::memcpy(&scale, &e, sizeof(raw));
  }

  // tanh|x| = -m / (m + 2) with m = expm1(-2|x|) in (-1, 0]: expm1 keeps its relative accuracy
  // near 0, so no series is needed there. expm1(y) = 2^n expm1(r) + (2^n - 1).
  FASTRNN_HD static raw vtanh(raw x) {
    constexpr bool f32 = sizeof(T) == 4;
    const raw lo = raw{} + exp_min;
    raw y = (x < T(0) ? x : -x) * T(2);  // -2|x|; NaN stays NaN
    y = lo > y ? lo : y;
    raw r, scale;
    reduce(y, r, scale);
    // expm1(r) = r + r^2 (1/2! + r/3! + ...): float32 to r^7, float64 to r^14.
    const raw p = taylor<f32 ? 7 : 14, 2>(r);
    const raw q = r + r * r * p;
    const raw m = scale * q + (scale - T(1));
    const raw t = m / (T(-2) - m);
    // |t| with x's sign (tanh(+-0) = +-0, NaN stays NaN).
    const iraw sign = iraw{} + (int_t(1) << (8 * sizeof(T) - 1));
    iraw ti, xi;
    std::memcpy(&ti, &t, sizeof(raw));
    std::memcpy(&xi, &x, sizeof(raw));
    ti = (ti & ~sign) | (xi & sign);
    raw out;
    std::memcpy(&out, &ti, sizeof(raw));
    return out;
  }
};

}  // namespace FASTRNN_ISA
}  // namespace fastrnn
