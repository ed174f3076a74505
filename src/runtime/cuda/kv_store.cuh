// Device helpers shared by the kernels that append K/V rows to the cache (kv_write.cu, and the
// decode fusion of the qk-norm/RoPE kernel in norm_rope.cu): where a position's row lives, which
// positions a ring keeps, and the FP8 row quantization (byte order and scales: fp8_kv_layout.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "runtime/cuda/fp8_kv_layout.h"
#include "runtime/cuda/kernels.h"

namespace gs::cuda::kv {

// Cache row of position p of the sequence in ring slot `slot` whose block table starts at
// `table`: slot·W + p mod W, or block_table[p / B]·B + p mod B. The one place a position is
// addressed: the writers (WriteRow) and the attention kernels' readers (attn::CacheRow) use it.
__device__ __forceinline__ int64_t CacheRowAt(const AttentionLayer& L, const AttentionMeta& meta,
                                              int slot, int table, int p) {
  if (L.window > 0) return static_cast<int64_t>(slot) * L.window + p % L.window;
  return static_cast<int64_t>(meta.block_tables[table + p / L.block_size]) * L.block_size +
         p % L.block_size;
}

// Cache row of position p of sequence s.
__device__ __forceinline__ int64_t WriteRow(const AttentionLayer& L, const AttentionMeta& meta,
                                            int s, int p) {
  return CacheRowAt(L, meta, L.window > 0 ? meta.seq_slot[s] : 0,
                    L.window > 0 ? 0 : meta.seq_table[s], p);
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

// 8 consecutive values of a row (bf16, as loaded in 16 B) times inv = 1 / s → their e4m3 codes
// in the cache's byte order [v0 v2 v1 v3 | v4 v6 v5 v7] (round to nearest even, saturating at
// ±448). fp8kv::QuantizeE4m3x8Host is the host twin.
__device__ __forceinline__ uint2 QuantizeE4m3x8(uint4 raw, float inv) {
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&raw);
  float f[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(x[i]);
    f[2 * i] = p.x * inv;
    f[2 * i + 1] = p.y * inv;
  }
  // Each cvt packs its first value in the low byte: (v0, v2) and (v1, v3) make [v0 v2 v1 v3].
  auto pair = [&](int a, int b) -> uint32_t {
    return __nv_cvt_float2_to_fp8x2(make_float2(f[a], f[b]), __NV_SATFINITE, __NV_E4M3);
  };
  return make_uint2(pair(0, 2) | pair(1, 3) << 16, pair(4, 6) | pair(5, 7) << 16);
}

}  // namespace gs::cuda::kv
