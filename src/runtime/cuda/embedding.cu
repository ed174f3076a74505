// Token embedding (reference gemma4 §3.2): h0 = E[token] · scale, with scale = bf16(√hidden)
// (53.0 for 2816) as the bf16 model multiplies. The residual stream h is kept in fp32.
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

// One block per token; 8 bf16 (16 B) per thread per step. PDL (launch.cuh): the ids come from
// the step's metadata upload and h may still be read by the previous step's last kernel.
__global__ void EmbedKernel(const int* __restrict__ ids, const bf16* __restrict__ table,
                            int hidden, float scale, float* __restrict__ h) {
  GridDependencyWait();
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  const bf16* row = table + static_cast<int64_t>(ids[t]) * hidden;
  float* out = h + t * hidden;
  for (int c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    const uint4 packed = *reinterpret_cast<const uint4*>(row + c);
    const bf16* v = reinterpret_cast<const bf16*>(&packed);
#pragma unroll
    for (int i = 0; i < 8; ++i) out[c + i] = __bfloat162float(v[i]) * scale;
  }
}

}  // namespace

Status LaunchEmbed(const int* ids, int tokens, const bf16* table, int hidden, float scale,
                   float* h, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (hidden % 8 != 0) return MakeError("LaunchEmbed: hidden ", hidden, " is not a multiple of 8");
  return LaunchKernel("EmbedKernel", EmbedKernel, tokens, 128, 0, stream, ids, table, hidden, scale,
                      h);
}

}  // namespace gs::cuda
