// End of the vision tower (reference gemma4 §4.4–4.5), all fp32: per soft token s
//   x = (Σ_{patches p of s, in patch order} h[p] · 1/k²) · √hidden
//   x = (x − std_bias) ⊙ std_scale          (when the tower standardises)
//   out[s] = bf16(x · (mean(x²) + eps)^-½)   (the projector's weight-free pre-norm)
// std_bias is ~1e4 in the real model: nothing here may run in 16-bit floats.
#include <cmath>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

// One block per soft token; `row` (dynamic smem) holds x between the two passes.
__global__ void VisionPoolKernel(const float* __restrict__ h, const int* __restrict__ slot_offsets,
                                 const int* __restrict__ slot_patches, int hidden, float inv_count,
                                 float root, const float* __restrict__ std_bias,
                                 const float* __restrict__ std_scale, float eps,
                                 bf16* __restrict__ out) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const int s = blockIdx.x, begin = slot_offsets[s], end = slot_offsets[s + 1];
  float ss = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    float acc = 0.0f;
    for (int i = begin; i < end; ++i) acc += h[static_cast<int64_t>(slot_patches[i]) * hidden + c] * inv_count;
    float x = acc * root;
    if (std_bias != nullptr) x = (x - std_bias[c]) * std_scale[c];
    row[c] = x;
    ss += x * x;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = ss;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < static_cast<int>(blockDim.x / 32); ++i) total += scratch[i];
  const float inv = rsqrtf(total / hidden + eps);
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    out[static_cast<int64_t>(s) * hidden + c] = __float2bfloat16_rn(row[c] * inv);
  }
}

}  // namespace

Status LaunchVisionPool(const float* h, const int* slot_offsets, const int* slot_patches,
                        int soft_tokens, int hidden, int kernel_size, const float* std_bias,
                        const float* std_scale, float eps, bf16* out, cudaStream_t stream) {
  if (soft_tokens <= 0) return Ok();
  if ((std_bias == nullptr) != (std_scale == nullptr)) {
    return MakeError("LaunchVisionPool: std_bias and std_scale go together");
  }
  const float inv_count = 1.0f / static_cast<float>(kernel_size * kernel_size);
  const float root = static_cast<float>(std::sqrt(static_cast<double>(hidden)));
  VisionPoolKernel<<<soft_tokens, 256, hidden * sizeof(float), stream>>>(
      h, slot_offsets, slot_patches, hidden, inv_count, root, std_bias, std_scale, eps, out);
  GS_CUDA_CHECK_LAUNCH("VisionPoolKernel");
  return Ok();
}

}  // namespace gs::cuda
