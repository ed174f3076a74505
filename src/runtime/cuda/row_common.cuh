// Building blocks of the one-block-per-row kernels (RMSNorm, post-attention norms, FFN combine).
//
// At decode batch sizes such a kernel is one block on one SM, and its time is its chain of
// dependent memory round trips and barriers. The register-resident form: every thread loads its
// whole share of every input row (kVec float4s per row: float4s i, i + blockDim.x, …) in one
// batch of independent loads at the start, keeps them in registers through the block reductions
// and writes its outputs from them: one memory round trip per kernel, no shared-memory staging,
// one barrier per block reduction.
//
// The block size follows the register budget: a kernel holding F float4 rows per vec needs about
// 4·F·kVec data registers per thread, so it gets at most RowMaxThreads(F, kVec) threads (the
// kernel's __launch_bounds__, so ptxas gets the matching register cap). Widths that are not a
// multiple of 4 (or rows not 16-byte aligned, or too wide for kRowMaxVec float4s per thread) take
// each kernel's loop-based generic form instead.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace gs::cuda::row {

// The most float4s per thread and row of the register-resident kernels.
constexpr int kMaxVec = 4;
// Registers a row kernel needs beside its data (indices, pointers, partial sums): a budget that
// ptxas -v confirms for the kernels of norm_rope.cu and moe.cu (no spills).
constexpr int kOverheadRegs = 24;

// Threads of a block whose threads each hold `f4_rows` × kVec float4s, so that the block's
// registers fit the SM's 64K: ptxas sizes the register cap of __launch_bounds__(t) for t rounded
// up to 4 warps, so t is a multiple of 128 (≤ 1024).
constexpr int MaxThreads(int f4_rows, int vec) {
  const int regs = (4 * f4_rows * vec + kOverheadRegs + 7) / 8 * 8;
  const int t = 65536 / regs / 128 * 128;
  return t < 1024 ? t : 1024;
}

// The smallest kVec in 1..max_vec whose block (ceil(n4 / kVec) threads rounded up to a warp) fits
// MaxThreads(f4_rows, kVec), with that block size; {0, 0} when none fits.
struct Shape {
  int vec = 0, threads = 0;
};
inline Shape PickShape(int n4, int f4_rows, int max_vec) {
  for (int vec = 1; vec <= max_vec; ++vec) {
    const int threads = ((n4 + vec - 1) / vec + 31) / 32 * 32;
    if (threads <= MaxThreads(f4_rows, vec)) return {vec, threads};
  }
  return {};
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// SetRowKernelsGeneric (kernels.h) is on: every row kernel takes its generic form.
bool ForcedGeneric();

// The register-resident shape of a row kernel holding `f4_rows` float4 rows per vec over `width`
// floats, or {0, 0} when its generic form must run: width not a multiple of 4, a row pointer
// (null ones aside) not 16-byte aligned, too wide for max_vec float4s per thread, or forced.
// With a 16-byte aligned base and width a multiple of 4, every fp32 row is 16-byte and every
// bf16 row 8-byte aligned.
template <typename... Ptrs>
Shape ShapeFor(int width, int f4_rows, int max_vec, const Ptrs*... ptrs) {
  if (ForcedGeneric() || width % 4 != 0 || !(Aligned16(ptrs) && ...)) return {};
  return PickShape(width / 4, f4_rows, max_vec);
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Butterfly sums: every lane adds the same two values at every level (a + b == b + a exactly),
// so all lanes end with bit-identical totals.
__device__ __forceinline__ float2 WarpSum2(float2 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.x += __shfl_xor_sync(0xffffffffu, v.x, o);
    v.y += __shfl_xor_sync(0xffffffffu, v.y, o);
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the same bits. Warp sums by
// shuffles, one barrier, then each warp sums the warps' partials by shuffles again. `scratch`
// (32 floats) belongs to this one reduction: a kernel gives each of its reductions its own, so
// no barrier is needed before the partials are written.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return WarpSum(lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : 0.0f);
}

// Two independent sums in one reduction (one barrier).
__device__ __forceinline__ float2 BlockSum2(float2 v, float2* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpSum2(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return WarpSum2(lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : make_float2(0, 0));
}

// This thread's float4s of a row of n4 float4s (zeros past the end). `row` 16-byte aligned.
template <int kVec>
__device__ __forceinline__ void Load(const float* row, int n4, float4 (&out)[kVec]) {
  const float4* p = reinterpret_cast<const float4*>(row);
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * blockDim.x;
    out[j] = q < n4 ? p[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
}

// Weights (never written by a kernel): the read-only path.
template <int kVec>
__device__ __forceinline__ void LoadConst(const float* row, int n4, float4 (&out)[kVec]) {
  const float4* p = reinterpret_cast<const float4*>(row);
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int q = threadIdx.x + j * blockDim.x;
    out[j] = q < n4 ? __ldg(p + q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
}

template <int kVec>
__device__ __forceinline__ void Fill(float4 (&out)[kVec], float v) {
#pragma unroll
  for (int j = 0; j < kVec; ++j) out[j] = make_float4(v, v, v, v);
}

// Σ x² over this thread's values.
template <int kVec>
__device__ __forceinline__ float SumSquares(const float4 (&x)[kVec]) {
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < kVec; ++j) s += x[j].x * x[j].x + x[j].y * x[j].y + x[j].z * x[j].z +
                                      x[j].w * x[j].w;
  return s;
}

// Whether this thread's j-th float4 lies inside the row.
__device__ __forceinline__ bool Owns(int j, int n4) {
  return threadIdx.x + j * blockDim.x < static_cast<unsigned>(n4);
}

__device__ __forceinline__ void Store(float* row, int j, float4 v) {
  reinterpret_cast<float4*>(row)[threadIdx.x + j * blockDim.x] = v;
}

// Four bf16 (round to nearest even) as one 8-byte store.
__device__ __forceinline__ void StoreBf16(__nv_bfloat16* row, int j, float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 bits;
  bits.x = *reinterpret_cast<uint32_t*>(&lo);
  bits.y = *reinterpret_cast<uint32_t*>(&hi);
  reinterpret_cast<uint2*>(row)[threadIdx.x + j * blockDim.x] = bits;
}

// The post-attention residual step in registers: v = h + a · rms(a)⁻¹ ⊙ w (a: the o
// projection's row, v: h's row, updated in place and stored to `h_row`); returns {rms(a)⁻¹,
// rms(v)⁻¹}. Two block reductions, each with its own scratch.
template <int kVec>
__device__ __forceinline__ float2 AddNormedResidual(float4 (&v)[kVec], const float4 (&a)[kVec],
                                                   const float4 (&w)[kVec], float* h_row, int n4,
                                                   int width, float eps, float* scratch_a,
                                                   float* scratch_h) {
  const float inv_a = rsqrtf(BlockSum(SumSquares<kVec>(a), scratch_a) / width + eps);
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    v[j].x = v[j].x + a[j].x * inv_a * w[j].x;
    v[j].y = v[j].y + a[j].y * inv_a * w[j].y;
    v[j].z = v[j].z + a[j].z * inv_a * w[j].z;
    v[j].w = v[j].w + a[j].w * inv_a * w[j].w;
    if (Owns(j, n4)) Store(h_row, j, v[j]);
  }
  return make_float2(inv_a, rsqrtf(BlockSum(SumSquares<kVec>(v), scratch_h) / width + eps));
}

// bf16(v · inv ⊙ w) of this thread's j-th float4 into `row`.
__device__ __forceinline__ void StoreNormedBf16(__nv_bfloat16* row, int j, float4 v, float inv,
                                                float4 w) {
  StoreBf16(row, j, make_float4(v.x * inv * w.x, v.y * inv * w.y, v.z * inv * w.z,
                                v.w * inv * w.w));
}

}  // namespace gs::cuda::row
