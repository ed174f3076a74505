// Final-logit softcap and greedy selection on the GPU, so a decode step can return token ids
// without copying [batch, 262144] logits to the host.
#include <cfloat>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

// x = cap · tanh(x / cap) (reference gemma4 §3.7).
__global__ void SoftcapKernel(float* __restrict__ x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = cap * tanhf(x[i] * inv);
  }
}

__device__ __forceinline__ void Better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// One block per row: per-thread best (value, lowest index), then warp and block reductions.
// NaN never wins (comparisons with NaN are false).
__global__ void ArgmaxKernel(const float* __restrict__ logits, int vocab, int* __restrict__ out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float best = -INFINITY;
  int best_i = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) Better(best, best_i, row[i], i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Better(best, best_i, __shfl_xor_sync(0xffffffffu, best, o),
           __shfl_xor_sync(0xffffffffu, best_i, o));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) Better(best, best_i, sv[w], si[w]);
    out[blockIdx.x] = best_i == INT_MAX ? 0 : best_i;
  }
}

}  // namespace

Status LaunchSoftcap(float* logits, int64_t n, float cap, cudaStream_t stream) {
  if (n <= 0 || cap <= 0.0f) return Ok();
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 8 * DeviceSmCount()));
  SoftcapKernel<<<blocks, 256, 0, stream>>>(logits, n, cap);
  GS_CUDA_CHECK_LAUNCH("SoftcapKernel");
  return Ok();
}

Status LaunchArgmax(const float* logits, int rows, int vocab, int* out, cudaStream_t stream) {
  if (rows <= 0) return Ok();
  ArgmaxKernel<<<rows, 1024, 0, stream>>>(logits, vocab, out);
  GS_CUDA_CHECK_LAUNCH("ArgmaxKernel");
  return Ok();
}

}  // namespace gs::cuda
