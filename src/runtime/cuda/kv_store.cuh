// Device helpers shared by the kernels that append K/V rows to the cache (kv_write.cu, and the
// decode fusion of the qk-norm/RoPE kernel in norm_rope.cu): where a position's row lives, which
// positions a ring keeps, and the FP8 row scale.
#pragma once

#include <cuda_fp8.h>

#include "runtime/cuda/kernels.h"

namespace gs::cuda::kv {

constexpr float kE4m3Max = 448.0f;

// Cache row of position p of sequence s: ring slot·W + p mod W, or block_table[p / B]·B + p mod B.
__device__ __forceinline__ int64_t WriteRow(const AttentionLayer& L, const AttentionMeta& meta,
                                            int s, int p) {
  if (L.window > 0) return static_cast<int64_t>(meta.seq_slot[s]) * L.window + p % L.window;
  return static_cast<int64_t>(meta.block_tables[meta.seq_table[s] + p / L.block_size]) *
             L.block_size + p % L.block_size;
}

// A ring keeps only the newest `window` positions of the chunk (older ones would collide).
__device__ __forceinline__ bool Skip(const AttentionLayer& L, const AttentionMeta& meta, int s,
                                     int p) {
  return L.window > 0 && p < meta.seq_start[s] + meta.seq_count[s] - L.window;
}

// Largest x over the block's threads (blockDim ≤ 1024, a multiple of 32; x ≥ 0). `scratch`
// (32 floats) must not be in use by another reduction of the block.
__device__ __forceinline__ float BlockMax(float x, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) scratch[warp] = x;
  __syncthreads();
  float m = 0.0f;
  for (int w = 0; w < warps; ++w) m = fmaxf(m, scratch[w]);
  return m;
}

// The dequant scale of an FP8 row whose largest |element| is amax (a zero row keeps scale 1: its
// codes are all zero either way).
__device__ __forceinline__ float RowScale(float amax) {
  return amax > 0.0f ? amax / kE4m3Max : 1.0f;
}

}  // namespace gs::cuda::kv
