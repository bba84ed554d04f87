// The per-thread functions of a whole network's data movement (stack_driver.h): packing and
// unpacking rows through an index map, joining the directions' outputs, adding and masking.
// Element i = (r, j) is row r and column j < cols; like pointwise.cuh, pure functions of their
// index, run by the CUDA kernels and by the host tests alike.
#pragma once

#include "pointwise.cuh"

namespace fastrnn {
namespace gpu {

// dst row r = src row from[r] (row r when from is null); ld: row strides.
template <typename T>
struct GatherRows {
  T* dst;
  long dst_ld;
  const T* src;
  long src_ld, cols;
  const long* from;
  FASTRNN_HD void operator()(long i) const {
    const long r = i / cols, j = i % cols;
    dst[r * dst_ld + j] = src[(from ? from[r] : r) * src_ld + j];
  }
};

// dst row to[r] = src row r.
template <typename T>
struct ScatterRows {
  T* dst;
  long dst_ld;
  const T* src;
  long src_ld, cols;
  const long* to;
  FASTRNN_HD void operator()(long i) const {
    const long r = i / cols, j = i % cols;
    dst[to[r] * dst_ld + j] = src[r * src_ld + j];
  }
};

// dst[i] += src[i], summed in A.
template <typename T, typename A>
struct AddTo {
  T* dst;
  const T* src;
  FASTRNN_HD void operator()(long i) const { dst[i] = cvt<T>(cvt<A>(dst[i]) + cvt<A>(src[i])); }
};

// data[i] *= mask[i]: inverted dropout with a mask of 0 and 1 / (1 - p).
template <typename T, typename A>
struct ScaleBy {
  T* data;
  const A* mask;
  FASTRNN_HD void operator()(long i) const { data[i] = cvt<T>(cvt<A>(data[i]) * mask[i]); }
};

}  // namespace gpu
}  // namespace fastrnn
