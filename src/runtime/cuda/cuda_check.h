// Turning CUDA and cuBLAS failures into gs::Error values that name the call at fault. Every CUDA
// API call and every kernel launch of the runner goes through one of these macros.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "util/status.h"

namespace gs::cuda {

inline Status CudaStatus(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return Ok();
  return MakeError("CUDA error in ", what, " (", file, ":", line, "): ", cudaGetErrorName(err),
                   ": ", cudaGetErrorString(err));
}

inline Status CublasStatus(cublasStatus_t st, const char* what, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return Ok();
  return MakeError("cuBLAS error in ", what, " (", file, ":", line, "): status ",
                   static_cast<int>(st));
}

}  // namespace gs::cuda

// Returns a gs::Error from the enclosing function when a CUDA runtime call fails.
#define GS_CUDA_RETURN_IF_ERROR(call) \
  GS_RETURN_IF_ERROR(::gs::cuda::CudaStatus((call), #call, __FILE__, __LINE__))

#define GS_CUBLAS_RETURN_IF_ERROR(call) \
  GS_RETURN_IF_ERROR(::gs::cuda::CublasStatus((call), #call, __FILE__, __LINE__))

// After a <<<...>>> launch: a bad configuration or an earlier asynchronous fault becomes an error
// naming the kernel.
#define GS_CUDA_CHECK_LAUNCH(kernel_name) \
  GS_RETURN_IF_ERROR(::gs::cuda::CudaStatus(cudaGetLastError(), "launch of " kernel_name, \
                                            __FILE__, __LINE__))
