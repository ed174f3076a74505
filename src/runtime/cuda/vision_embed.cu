// Vision patch embedding around its GEMM (reference gemma4 §4.2): the pixels of every patch as
// the GEMM's bf16 input 2·(p − ½), and after the GEMM the two position tables added per patch,
//   h[t] = e[t] + (T_x[x_t] + T_y[y_t])      (fp32; the CPU encoder's order of additions)
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

__global__ void VisionPixelsKernel(const float* __restrict__ pixels, int64_t n,
                                   bf16* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(2.0f * (pixels[i] - 0.5f));
  }
}

// One block per patch.
__global__ void VisionPositionsKernel(const float* __restrict__ e, const int* __restrict__ pos_x,
                                      const int* __restrict__ pos_y, const float* __restrict__ table,
                                      int table_size, int hidden, float* __restrict__ h) {
  const int64_t t = blockIdx.x;
  const float* tx = table + static_cast<int64_t>(pos_x[t]) * hidden;
  const float* ty = table + (static_cast<int64_t>(table_size) + pos_y[t]) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    h[t * hidden + c] = e[t * hidden + c] + (tx[c] + ty[c]);
  }
}

}  // namespace

Status LaunchVisionPixels(const float* pixels, int64_t n, bf16* out, cudaStream_t stream) {
  if (n <= 0) return Ok();
  VisionPixelsKernel<<<4 * DeviceSmCount(), 256, 0, stream>>>(pixels, n, out);
  GS_CUDA_CHECK_LAUNCH("VisionPixelsKernel");
  return Ok();
}

Status LaunchVisionPositions(const float* e, const int* pos_x, const int* pos_y,
                             const float* table, int table_size, int patches, int hidden,
                             float* h, cudaStream_t stream) {
  if (patches <= 0) return Ok();
  VisionPositionsKernel<<<patches, 256, 0, stream>>>(e, pos_x, pos_y, table, table_size, hidden,
                                                     h);
  GS_CUDA_CHECK_LAUNCH("VisionPositionsKernel");
  return Ok();
}

}  // namespace gs::cuda
