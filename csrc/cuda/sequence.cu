// The layer driver (driver.h) on the CUDA backend (backend.cuh), on the caller's stream.
#include "backend.cuh"
#include "driver.h"

namespace fastrnn {
namespace gpu {

template <typename T, typename A>
void layer_forward(const LayerForward<T, A>& args, CUstream_st* stream) {
  CudaBackend be(std::make_shared<cudaStream_t>(stream));
  run_forward(be, args);
}

template <typename T, typename A>
void layer_backward(const LayerBackward<T, A>& args, CUstream_st* stream) {
  CudaBackend be(std::make_shared<cudaStream_t>(stream));
  run_backward(be, args);
}

#define FASTRNN_INSTANTIATE(T, A)                                             \
  template void layer_forward<T, A>(const LayerForward<T, A>&, CUstream_st*); \
  template void layer_backward<T, A>(const LayerBackward<T, A>&, CUstream_st*);
FASTRNN_INSTANTIATE(float, float)
FASTRNN_INSTANTIATE(double, double)
FASTRNN_INSTANTIATE(__half, float)
FASTRNN_INSTANTIATE(__nv_bfloat16, float)
#undef FASTRNN_INSTANTIATE

}  // namespace gpu
}  // namespace fastrnn
