// The Tree-LSTM level loop (tree_driver.h) on the CUDA backend: cuBLAS GEMMs and the per-thread
// functions of tree_nodes.cuh as kernels, all on the caller's stream.
#include "backend.cuh"
#include "tree_driver.h"

namespace fastrnn {
namespace gpu {

template <typename T, typename A>
std::shared_ptr<TreeHandle> tree_forward(const TreeForwardArgs<T>& args, CUstream_st* stream) {
  return keep_forward<TreeHandle, CudaBackend, TreeState<CudaBackend, T, A>>(
      stream, [&](CudaBackend& be) { return run_tree_forward<CudaBackend, T, A>(be, args); });
}

template <typename T, typename A>
void tree_backward(TreeHandle& state, const TreeBackwardArgs<T, A>& args, CUstream_st* stream) {
  resume_backward<TreeHandle, CudaBackend, TreeState<CudaBackend, T, A>>(
      state, stream, "tree_backward", [&](CudaBackend& be, auto& kept) { run_tree_backward(be, kept, args); });
}

#define FASTRNN_INSTANTIATE(T, A)                                                              \
  template std::shared_ptr<TreeHandle> tree_forward<T, A>(const TreeForwardArgs<T>&,           \
                                                          CUstream_st*);                       \
  template void tree_backward<T, A>(TreeHandle&, const TreeBackwardArgs<T, A>&, CUstream_st*);
FASTRNN_INSTANTIATE(float, float)
FASTRNN_INSTANTIATE(double, double)
FASTRNN_INSTANTIATE(__half, float)
FASTRNN_INSTANTIATE(__nv_bfloat16, float)
#undef FASTRNN_INSTANTIATE

}  // namespace gpu
}  // namespace fastrnn
