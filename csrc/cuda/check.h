// Every CUDA runtime status is checked: a failure becomes a CudaError naming the call.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "layer.h"

namespace fastrnn {
namespace gpu {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ")");
}

}  // namespace gpu
}  // namespace fastrnn
