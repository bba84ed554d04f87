// Shared scalar helpers for the cell headers. Everything here is a pure function of its arguments,
// compiled by the host compiler and, with FASTRNN_HD = __host__ __device__, by nvcc.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define FASTRNN_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Inlined into the kernels' loops: a call there would spill every vector register (all are
// caller-saved), the accumulators of the panel included.
#define FASTRNN_HD inline __attribute__((always_inline))
#else
#define FASTRNN_HD inline
#endif

namespace fastrnn {

// The cells are templates over a value type V: a scalar (float, double, or a CUDA thread's value)
// or a SIMD vector type from csrc/cpu/simd.h, which provides the same four functions by overload.
FASTRNN_HD float fr_exp(float x) { return expf(x); }
FASTRNN_HD double fr_exp(double x) { return exp(x); }
FASTRNN_HD float fr_tanh(float x) { return tanhf(x); }
FASTRNN_HD double fr_tanh(double x) { return tanh(x); }
template <typename T>
FASTRNN_HD T fr_sigmoid(T x) { return T(1) / (T(1) + fr_exp(-x)); }
// relu that propagates NaN, as torch does: NaN < 0 is false.
template <typename T>
FASTRNN_HD T fr_relu(T x) { return x < T(0) ? T(0) : x; }
// relu'(pre) expressed through the output h = relu(pre): 1 where h > 0.
template <typename T>
FASTRNN_HD T fr_relu_grad(T h, T dh) { return h > T(0) ? dh : T(0); }

}  // namespace fastrnn
