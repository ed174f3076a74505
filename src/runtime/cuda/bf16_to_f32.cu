// Widening bf16 → fp32 on the device (exact). The router runs in fp32 (DESIGN §4), so its bf16
// weights are widened once at load and multiplied by an fp32 GEMM.
#include <algorithm>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

__global__ void Bf16ToF32Kernel(const bf16* __restrict__ in, int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __bfloat162float(in[i]);
  }
}

}  // namespace

Status LaunchBf16ToF32(const bf16* in, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return Ok();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 4096);
  Bf16ToF32Kernel<<<static_cast<int>(blocks), kThreads, 0, stream>>>(in, n, out);
  GS_CUDA_CHECK_LAUNCH("Bf16ToF32Kernel");
  return Ok();
}

}  // namespace gs::cuda
