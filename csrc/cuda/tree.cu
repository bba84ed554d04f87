// The Tree-LSTM level loop (tree_driver.h) on the CUDA backend: cuBLAS GEMMs and the per-thread
// functions of tree_nodes.cuh as kernels, all on the caller's stream.
#include <stdexcept>

#include "backend.cuh"
#include "tree_driver.h"

namespace fastrnn {
namespace gpu {
namespace {

template <typename T, typename A>
using DeviceTree = DeviceState<TreeHandle, TreeState<CudaBackend, T, A>>;

}  // namespace

template <typename T, typename A>
std::shared_ptr<TreeHandle> tree_forward(const TreeForwardArgs<T>& args, CUstream_st* stream) {
  auto slot = std::make_shared<cudaStream_t>(stream);
  CudaBackend be(slot);
  auto state = run_tree_forward<CudaBackend, T, A>(be, args);
  if (!state) return nullptr;
  auto handle = std::make_shared<DeviceTree<T, A>>();
  check(cudaGetDevice(&handle->device), "cudaGetDevice");
  handle->stream = slot;
  handle->state = std::move(state);
  return handle;
}

template <typename T, typename A>
void tree_backward(TreeHandle& state, const TreeBackwardArgs<T, A>& args, CUstream_st* stream) {
  auto* tree = dynamic_cast<DeviceTree<T, A>*>(&state);
  if (!tree) throw std::invalid_argument("tree_backward: the state of a forward of another dtype");
  *tree->stream = stream;  // the buffers of the state now free on this stream
  CudaBackend be(tree->stream);
  run_tree_backward(be, *tree->state, args);
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
