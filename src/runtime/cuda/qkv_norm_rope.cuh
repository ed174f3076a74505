// The arithmetic of the per-head q/k/v RMS norm and rotate-half RoPE, shared by
// QkvNormRopeKernel (norm_rope.cu) and the decode attention kernel's fused form
// (attention_decode.cu), which must produce the very same bf16 values (and so the very same
// attention output and cache bytes). Every operation is pinned with an intrinsic, so no fused
// multiply-add is left to the compiler's choice in one kernel and not the other, and the sum of
// squares is defined by QkvNormRopeKernel's block of NormThreads(d) threads: thread i sums
// x[i]², x[i + B]², … (B = the block size) with fma, each warp sums its threads with an xor
// butterfly (16, 8, 4, 2, 1), and the warps' sums are added in order, starting from 0.
#pragma once

#include <cuda_runtime.h>

namespace gs::cuda::qkv {

// Threads of QkvNormRopeKernel's block for head_dim d: one per rotation pair, in whole warps,
// at most 256.
__host__ __device__ constexpr int NormThreads(int d) {
  const int t = (d / 2 + 31) / 32 * 32;
  return t < 32 ? 32 : (t > 256 ? 256 : t);
}

// ss + x² (one rounding).
__device__ __forceinline__ float AddSquare(float ss, float x) { return __fmaf_rn(x, x, ss); }

// The xor-butterfly sum of a warp (every lane ends with the same bits: a + b = b + a).
__device__ __forceinline__ float ButterflySum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// (mean(x²) + eps)^-½ from the row's sum of squares.
__device__ __forceinline__ float InvRms(float sum_sq, int d, float eps) {
  return rsqrtf(__fadd_rn(__fdiv_rn(sum_sq, static_cast<float>(d)), eps));
}

// sin and cos of the RoPE angle float(pos)·freq (sincosf on the fp32 angle, as PyTorch).
__device__ __forceinline__ void RopeSinCos(int pos, float freq, float* s, float* c) {
  sincosf(__fmul_rn(static_cast<float>(pos), freq), s, c);
}

// The rotation pair (x1, x2) = (x_i, x_{i+d/2}) of a head's raw row → x·inv (× (w1, w2) when
// weighted), then, when rotate (q and k with freq ≠ 0; freq 0 is proportional RoPE's static
// part), rotated by the angle whose sin and cos RopeSinCos gave.
__device__ __forceinline__ float2 NormRopePair(float x1, float x2, float inv, bool weighted,
                                               float w1, float w2, bool rotate, float s,
                                               float c) {
  x1 = __fmul_rn(x1, inv);
  x2 = __fmul_rn(x2, inv);
  if (weighted) {
    x1 = __fmul_rn(x1, w1);
    x2 = __fmul_rn(x2, w2);
  }
  if (rotate) {
    const float r1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    const float r2 = __fmaf_rn(x2, c, __fmul_rn(x1, s));
    x1 = r1;
    x2 = r2;
  }
  return make_float2(x1, x2);
}

}  // namespace gs::cuda::qkv
