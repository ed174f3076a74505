// Appends a step's K/V rows to the KV cache (ring for sliding layers, paged blocks for global
// layers), as bf16 or as e4m3 with a per-(token, kv head) scale (byte order and scale convention:
// fp8_kv_layout.h).
//
// Why a per-row scale (amax / 448) rather than vLLM's default static scale of 1.0: Gemma 4's K is
// RMS-normed with a learned weight and V is RMS-normed without one, so values are O(1) but their
// largest elements vary per token and head; with a fixed scale of 1 every element below 2^-6
// (e4m3's smallest normal) loses relative precision and nothing uses the top of the range. A
// scale per row puts each row's largest element at 448, so every element keeps e4m3's full
// 3-bit mantissa (relative error ≤ 2^-4) unless it is 2^15 times smaller than the row's maximum.
// It costs 4 bytes per row of d = 256/512 bytes (1.6 % / 0.8 %).
#include <cuda_fp8.h>

#include <algorithm>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/kv_store.cuh"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

using kv::BlockMax;
using kv::Skip;
using kv::WriteRow;

// Block = (token, kv head); thread = 16 B of the head's K and V row.
__global__ void KvWriteBf16Kernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ k,
                                  const bf16* __restrict__ v) {
  GridDependencyWait();  // PDL (launch.cuh): before the metadata, k/v and the cache
  TriggerDependentsIfOneWave();
  const int tok = blockIdx.x, g = blockIdx.y;
  const int s = meta.token_seq[tok], p = meta.positions[tok];
  if (Skip(L, meta, s, p)) return;
  const int64_t row = WriteRow(L, meta, s, p);
  const int d = L.head_dim;
  const int64_t src = (static_cast<int64_t>(tok) * L.kv_heads + g) * d;
  const int64_t dst = (row * L.kv_heads + g) * d;
  bf16* kc = static_cast<bf16*>(L.k_cache);
  bf16* vc = static_cast<bf16*>(L.v_cache);
  for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
    *reinterpret_cast<uint4*>(kc + dst + c) = *reinterpret_cast<const uint4*>(k + src + c);
    *reinterpret_cast<uint4*>(vc + dst + c) = *reinterpret_cast<const uint4*>(v + src + c);
  }
}

// Block = (token, kv head); thread = 8 elements of the K and V rows.
__global__ void KvWriteFp8Kernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ k,
                                 const bf16* __restrict__ v) {
  __shared__ float scratch[2][32];
  GridDependencyWait();  // PDL (launch.cuh): before the metadata, k/v and the cache
  TriggerDependentsIfOneWave();
  const int tok = blockIdx.x, g = blockIdx.y;
  const int s = meta.token_seq[tok], p = meta.positions[tok];
  if (Skip(L, meta, s, p)) return;  // uniform over the block: no barrier is skipped by some
  const int d = L.head_dim;
  const int64_t src = (static_cast<int64_t>(tok) * L.kv_heads + g) * d;
  float kmax = 0.0f, vmax = 0.0f;
  for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
    const uint4 kr = *reinterpret_cast<const uint4*>(k + src + c);
    const uint4 vr = *reinterpret_cast<const uint4*>(v + src + c);
    const __nv_bfloat162* kx = reinterpret_cast<const __nv_bfloat162*>(&kr);
    const __nv_bfloat162* vx = reinterpret_cast<const __nv_bfloat162*>(&vr);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 kf = __bfloat1622float2(kx[i]), vf = __bfloat1622float2(vx[i]);
      kmax = fmaxf(kmax, fmaxf(fabsf(kf.x), fabsf(kf.y)));
      vmax = fmaxf(vmax, fmaxf(fabsf(vf.x), fabsf(vf.y)));
    }
  }
  kmax = BlockMax(kmax, scratch[0]);
  vmax = BlockMax(vmax, scratch[1]);
  const float ks = fp8kv::RowScale(kmax), vs = fp8kv::RowScale(vmax);
  const float k_inv = 1.0f / ks, v_inv = 1.0f / vs;
  const int64_t row = WriteRow(L, meta, s, p);
  const int64_t dst = (row * L.kv_heads + g) * d;
  uint8_t* kc = static_cast<uint8_t*>(L.k_cache);
  uint8_t* vc = static_cast<uint8_t*>(L.v_cache);
  for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
    *reinterpret_cast<uint2*>(kc + dst + c) =
        kv::QuantizeE4m3x8(*reinterpret_cast<const uint4*>(k + src + c), k_inv);
    *reinterpret_cast<uint2*>(vc + dst + c) =
        kv::QuantizeE4m3x8(*reinterpret_cast<const uint4*>(v + src + c), v_inv);
  }
  if (threadIdx.x == 0) {  // stored as s · 2^120 (fp8_kv_layout.h)
    L.k_scale[row * L.kv_heads + g] = fp8kv::StoredScale(ks);
    L.v_scale[row * L.kv_heads + g] = fp8kv::StoredScale(vs);
  }
}

}  // namespace

Status LaunchKvWrite(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* k,
                     const bf16* v, int tokens, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (layer.head_dim % 8 != 0) return MakeError("LaunchKvWrite: head_dim ", layer.head_dim);
  const dim3 grid(tokens, layer.kv_heads);
  if (layer.kv_dtype == KvDtype::kFp8E4m3) {
    if (!layer.k_scale || !layer.v_scale) return MakeError("LaunchKvWrite: FP8 cache without scales");
    const int threads = std::max(32, std::min(256, (layer.head_dim / 8 + 31) / 32 * 32));
    return LaunchKernel("KvWriteFp8Kernel", KvWriteFp8Kernel, grid, threads, 0, stream, layer, meta,
                        k, v);
  }
  const int threads = std::max(32, std::min(256, layer.head_dim / 8));
  return LaunchKernel("KvWriteBf16Kernel", KvWriteBf16Kernel, grid, threads, 0, stream, layer,
                      meta, k, v);
}

}  // namespace gs::cuda
