#include "runtime/cuda/gpu_memory.h"

#include <cuda_runtime.h>

#include "runtime/cuda/cuda_check.h"

namespace gs {

Expected<GpuMemoryInfo> QueryGpuMemory(int device) {
  GS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  size_t free_bytes = 0, total_bytes = 0;
  GS_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  return GpuMemoryInfo{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

}  // namespace gs
