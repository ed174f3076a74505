// Attention inputs of a vision encoder layer (reference gemma4 §4.3): from the fused projection
// qkv fp32 [N, 3·heads·d], per (patch, head)
//   q = rope2d(rms(q) ⊙ q_norm), k = rope2d(rms(k) ⊙ k_norm), v = rms(v)   (fp32, eps)
// stored bf16 as [N, heads, dp] with the columns d … dp−1 zero (dp = d rounded up to 16, the
// attention kernel's mma width). 2-D RoPE: the first d/2 channels rotate with the patch column x,
// the last d/2 with the row y; inside each half, rotate-half pairs (i, i + d/4) turn by
// float(pos)·inv_freq[i], i < d/4 (what the CPU encoder's two ApplyRope calls do).
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

__device__ float VisionBlockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < warps; ++i) total += scratch[i];
  return total;
}

// Grid (patches, 3·heads): blockIdx.y = part·heads + head, part 0 q, 1 k, 2 v. Thread j < d/2
// owns the pair (e1, e1 + d/4) with e1 = (j / (d/4))·(d/2) + j % (d/4).
__global__ void VisionQkvNormRopeKernel(const float* __restrict__ qkv, int heads, int d, int dp,
                                        const float* __restrict__ q_norm,
                                        const float* __restrict__ k_norm,
                                        const float* __restrict__ inv_freq,
                                        const int* __restrict__ pos_x,
                                        const int* __restrict__ pos_y, float eps,
                                        bf16* __restrict__ q, bf16* __restrict__ k,
                                        bf16* __restrict__ v) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const int part = blockIdx.y / heads, head = blockIdx.y % heads;
  const float* src = qkv + (t * 3 + part) * heads * d + static_cast<int64_t>(head) * d;
  const float* w = part == 0 ? q_norm : part == 1 ? k_norm : nullptr;
  bf16* dst = (part == 0 ? q : part == 1 ? k : v) + (t * heads + head) * dp;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss += src[i] * src[i];
  const float inv = rsqrtf(VisionBlockSum(ss, scratch) / d + eps);
  const int half = d / 2, quarter = d / 4;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const int chunk = j / quarter, i = j % quarter;
    const int e1 = chunk * half + i, e2 = e1 + quarter;
    float x1 = src[e1] * inv, x2 = src[e2] * inv;
    if (w != nullptr) {
      x1 *= w[e1];
      x2 *= w[e2];
    }
    if (part < 2) {
      const float angle = static_cast<float>(chunk == 0 ? pos_x[t] : pos_y[t]) * inv_freq[i];
      float s, c;
      sincosf(angle, &s, &c);
      const float r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
      x1 = r1;
      x2 = r2;
    }
    dst[e1] = __float2bfloat16_rn(x1);
    dst[e2] = __float2bfloat16_rn(x2);
  }
  for (int i = d + threadIdx.x; i < dp; i += blockDim.x) dst[i] = __float2bfloat16_rn(0.0f);
}

}  // namespace

Status LaunchVisionQkvNormRope(const float* qkv, int patches, int heads, int head_dim,
                               int padded_dim, const float* q_norm, const float* k_norm,
                               const float* inv_freq, const int* pos_x, const int* pos_y,
                               float eps, bf16* q, bf16* k, bf16* v, cudaStream_t stream) {
  if (patches <= 0) return Ok();
  if (head_dim % 4 != 0 || padded_dim < head_dim) {
    return MakeError("LaunchVisionQkvNormRope: head_dim ", head_dim,
                     " must be a multiple of 4 (two RoPE halves of rotate-half pairs), padded ",
                     padded_dim);
  }
  const dim3 grid(patches, 3 * heads);
  const int threads = std::min(256, std::max(32, (head_dim / 2 + 31) / 32 * 32));
  VisionQkvNormRopeKernel<<<grid, threads, 0, stream>>>(qkv, heads, head_dim, padded_dim, q_norm,
                                                        k_norm, inv_freq, pos_x, pos_y, eps, q,
                                                        k, v);
  GS_CUDA_CHECK_LAUNCH("VisionQkvNormRopeKernel");
  return Ok();
}

}  // namespace gs::cuda
