// Attention for prefill and decode (reference gemma4 §3.4): sliding layers (head_dim 256, window
// 1024, GQA group 2) and global layers (head_dim 512, k_eq_v, GQA group 8); scale 1.0, no softcap.
// KV cache per DESIGN §3: global layers in paged blocks through each sequence's block table,
// sliding layers in a ring of `window` positions per KV slot.
#include <algorithm>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

constexpr int kRows = 16;      // query rows per block: (tokens of a tile) × (q heads of a kv head)
constexpr int kKeys = 32;      // keys per shared-memory tile
constexpr int kThreads = 256;
constexpr int kPad = 8;        // bf16 padding of a K/V row (16 B): conflict-free row-wise loads

struct TileInfo {
  int tok0, nq, start, first, slot, table, pos0, kbeg, kend;
};

__device__ __forceinline__ TileInfo GetTile(const AttentionMeta& m, int tile, int window) {
  TileInfo t;
  const int s = m.tile_seq[tile];
  t.tok0 = m.tile_first[tile];
  t.nq = m.tile_count[tile];
  t.start = m.seq_start[s];
  t.first = m.seq_first[s];
  t.slot = m.seq_slot[s];
  t.table = m.seq_table[s];
  t.pos0 = t.start + (t.tok0 - t.first);
  t.kend = t.pos0 + t.nq - 1;
  t.kbeg = window > 0 ? max(0, t.pos0 - window + 1) : 0;
  return t;
}

// Cache row of position p: ring slot·W + p mod W, or block_table[p / B]·B + p mod B.
__device__ __forceinline__ int64_t CacheRow(const AttentionLayer& L, const AttentionMeta& m,
                                            const TileInfo& t, int p) {
  if (L.window > 0) return static_cast<int64_t>(t.slot) * L.window + p % L.window;
  return static_cast<int64_t>(m.block_tables[t.table + p / L.block_size]) * L.block_size +
         p % L.block_size;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block = one query tile (≤ 16/G consecutive tokens of one sequence) × one kv head g: its 16 rows
// are (token qi, q head g·G + i). It walks the tile's keys [kbeg, kend] (this split's share) in
// tiles of 32 with the online softmax (fp32):
//   s_rj = q_r · k_j (masked: j > pos_r, or pos_r − j ≥ window)
//   m' = max(m, max_j s_rj);  p_rj = e^(s_rj − m');  l' = l·e^(m − m') + Σ_j p_rj
//   o_r = o_r·e^(m − m') + Σ_j p_rj v_j
// Keys at positions ≥ the sequence's first new position come from this step's k/v (the chunk),
// earlier ones from the cache, so a chunk longer than the window still sees its exact window.
// With one split the block writes o/l as bf16; otherwise unnormalised o, m and l go to `partial`.
template <int D>
__global__ void __launch_bounds__(kThreads)
    AttentionKernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ q,
                    const bf16* __restrict__ k_new, const bf16* __restrict__ v_new, int tokens,
                    float* __restrict__ partial, bf16* __restrict__ out) {
  constexpr int kRowStride = D + kPad;
  constexpr int kPairs = D / 2;
  constexpr int kPairThreads = kPairs < kThreads ? kPairs : kThreads;
  constexpr int kPairsPerThread = kPairs / kPairThreads;       // 1 (D ≤ 512)
  constexpr int kRowGroups = kThreads / kPairThreads;
  constexpr int kRowsPerThread = kRows / kRowGroups;
  static_assert(kPairsPerThread == 1 && kRows % kRowGroups == 0, "unsupported head_dim");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* qs = reinterpret_cast<float*>(smem_raw);                         // [16][D]
  bf16* ks = reinterpret_cast<bf16*>(qs + kRows * D);                     // [32][D + pad]
  bf16* vs = ks + kKeys * kRowStride;                                     // [32][D + pad]
  float* ps = reinterpret_cast<float*>(vs + kKeys * kRowStride);          // [16][32]
  __shared__ float row_m[kRows], row_l[kRows], row_alpha[kRows];

  const int g = blockIdx.y;
  const int group = L.heads / L.kv_heads;
  const TileInfo t = GetTile(meta, blockIdx.x, L.window);
  const int tid = threadIdx.x;

  // This split's key tiles. Each split gets ≥ 2 key tiles (64 keys): with short contexts the
  // trailing splits are empty, so the split count can be fixed per batch shape (decode graphs)
  // without spending blocks on 32-key slivers. Empty splits only mark their partials empty.
  const int n_tiles = (t.kend - t.kbeg + kKeys) / kKeys;
  const int splits = min(static_cast<int>(gridDim.z), max(1, (n_tiles + 1) / 2));
  const int per_split = (n_tiles + splits - 1) / splits;
  const int tile_begin = blockIdx.z * per_split;
  const int tile_end = min(n_tiles, tile_begin + per_split);
  if (gridDim.z > 1 && tile_begin >= tile_end) {
    if (tid < kRows && tid / group < t.nq) {
      const int64_t row = static_cast<int64_t>(t.tok0 + tid / group) * L.heads + g * group +
                          tid % group;
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
      dst[D] = -INFINITY;
      dst[D + 1] = 0.0f;
    }
    return;
  }

  for (int i = tid; i < kRows * D; i += kThreads) {
    const int r = i / D, c = i % D, qi = r / group;
    float v = 0.0f;
    if (qi < t.nq) {
      const int head = g * group + r % group;
      v = __bfloat162float(q[(static_cast<int64_t>(t.tok0 + qi) * L.heads + head) * D + c]);
    }
    qs[i] = v;
  }
  if (tid < kRows) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.0f;
  }

  const int pair = tid % kPairThreads, rgroup = tid / kPairThreads;
  float acc[kRowsPerThread][2];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) acc[i][0] = acc[i][1] = 0.0f;

  for (int kt = tile_begin; kt < tile_end; ++kt) {
    const int k0 = t.kbeg + kt * kKeys;
    __syncthreads();  // previous tile fully consumed (and q/row stats visible on the first)
    constexpr int kVecs = D / 8;
    for (int i = tid; i < kKeys * kVecs; i += kThreads) {
      const int j = i / kVecs, c = (i % kVecs) * 8, p = k0 + j;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
      if (p <= t.kend) {
        int64_t off;
        const bf16 *kb, *vb;
        if (p >= t.start) {
          off = (static_cast<int64_t>(t.first + p - t.start) * L.kv_heads + g) * D + c;
          kb = k_new;
          vb = v_new;
        } else {
          off = (CacheRow(L, meta, t, p) * L.kv_heads + g) * D + c;
          kb = L.k_cache;
          vb = L.v_cache;
        }
        kv = *reinterpret_cast<const uint4*>(kb + off);
        vv = *reinterpret_cast<const uint4*>(vb + off);
      }
      *reinterpret_cast<uint4*>(ks + j * kRowStride + c) = kv;
      *reinterpret_cast<uint4*>(vs + j * kRowStride + c) = vv;
    }
    __syncthreads();

    // Scores: thread = (key j, rows rg and rg + 8).
    {
      const int j = tid % kKeys, rg = tid / kKeys, p = k0 + j;
      const float* q0 = qs + rg * D;
      const float* q1 = qs + (rg + 8) * D;
      const bf16* kr = ks + j * kRowStride;
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll 4
      for (int c = 0; c < D; c += 8) {
        const uint4 packed = *reinterpret_cast<const uint4*>(kr + c);
        const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&packed);
        const float4 a0 = *reinterpret_cast<const float4*>(q0 + c);
        const float4 a1 = *reinterpret_cast<const float4*>(q0 + c + 4);
        const float4 b0 = *reinterpret_cast<const float4*>(q1 + c);
        const float4 b1 = *reinterpret_cast<const float4*>(q1 + c + 4);
        const float2 k01 = __bfloat1622float2(k2[0]), k23 = __bfloat1622float2(k2[1]);
        const float2 k45 = __bfloat1622float2(k2[2]), k67 = __bfloat1622float2(k2[3]);
        s0 += a0.x * k01.x + a0.y * k01.y + a0.z * k23.x + a0.w * k23.y + a1.x * k45.x +
              a1.y * k45.y + a1.z * k67.x + a1.w * k67.y;
        s1 += b0.x * k01.x + b0.y * k01.y + b0.z * k23.x + b0.w * k23.y + b1.x * k45.x +
              b1.y * k45.y + b1.z * k67.x + b1.w * k67.y;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = rg + 8 * h, qi = r / group, pos = t.pos0 + qi;
        const bool visible = qi < t.nq && p <= pos && (L.window == 0 || pos - p < L.window);
        ps[r * kKeys + j] = visible ? (h == 0 ? s0 : s1) : -INFINITY;
      }
    }
    __syncthreads();

    // Online softmax: warp w owns rows w and w + 8; lane = key.
    {
      const int w = tid / 32, lane = tid % 32;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = w + 8 * h;
        const float s = ps[r * kKeys + lane];
        const float m_old = row_m[r];
        const float m_new = fmaxf(m_old, WarpMax(s));
        float p = 0.0f, alpha = 1.0f;
        if (m_new != -INFINITY) {
          p = s == -INFINITY ? 0.0f : __expf(s - m_new);
          alpha = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
        }
        const float sum = WarpSum(p);
        ps[r * kKeys + lane] = p;
        __syncwarp();
        if (lane == 0) {
          row_m[r] = m_new;
          row_l[r] = row_l[r] * alpha + sum;
          row_alpha[r] = alpha;
        }
      }
    }
    __syncthreads();

    // o += P · V: thread = (column pair, kRowsPerThread rows).
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const float alpha = row_alpha[rgroup * kRowsPerThread + i];
      acc[i][0] *= alpha;
      acc[i][1] *= alpha;
    }
    for (int j = 0; j < kKeys; ++j) {
      const float2 v2 = __bfloat1622float2(
          *reinterpret_cast<const __nv_bfloat162*>(vs + j * kRowStride + 2 * pair));
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        const float p = ps[(rgroup * kRowsPerThread + i) * kKeys + j];
        acc[i][0] += p * v2.x;
        acc[i][1] += p * v2.y;
      }
    }
  }
  __syncthreads();

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int r = rgroup * kRowsPerThread + i, qi = r / group;
    if (qi >= t.nq) continue;
    const int head = g * group + r % group;
    const int64_t row = static_cast<int64_t>(t.tok0 + qi) * L.heads + head;
    if (gridDim.z == 1) {
      const float l = row_l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      *reinterpret_cast<__nv_bfloat162*>(out + row * D + 2 * pair) =
          __floats2bfloat162_rn(acc[i][0] * inv, acc[i][1] * inv);
    } else {
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
      dst[2 * pair] = acc[i][0];
      dst[2 * pair + 1] = acc[i][1];
      if (pair == 0) {
        dst[D] = row_m[r];
        dst[D + 1] = row_l[r];
      }
    }
  }
}

// Merges the splits of one (token, head): M = max m_z, w_z = e^(m_z − M),
// o = Σ w_z o_z / Σ w_z l_z.
__global__ void AttentionMergeKernel(const float* __restrict__ partial, int splits, int tokens,
                                     int heads, int d, bf16* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * heads + blockIdx.y;
  const int64_t split_stride = static_cast<int64_t>(tokens) * heads * (d + 2);
  const float* base = partial + row * (d + 2);
  float m = -INFINITY;
  for (int z = 0; z < splits; ++z) m = fmaxf(m, base[z * split_stride + d]);
  float l = 0.0f;
  for (int z = 0; z < splits; ++z) {
    const float mz = base[z * split_stride + d];
    if (mz != -INFINITY) l += __expf(mz - m) * base[z * split_stride + d + 1];
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float o = 0.0f;
    for (int z = 0; z < splits; ++z) {
      const float mz = base[z * split_stride + d];
      if (mz != -INFINITY) o += __expf(mz - m) * base[z * split_stride + c];
    }
    out[row * d + c] = __float2bfloat16_rn(o * inv);
  }
}

// Block = (token, kv head); thread = 16 B of the head's K and V row.
__global__ void KvWriteKernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ k,
                              const bf16* __restrict__ v) {
  const int tok = blockIdx.x, g = blockIdx.y;
  const int s = meta.token_seq[tok], p = meta.positions[tok];
  // A ring keeps only the newest `window` positions of the chunk (older ones would collide).
  if (L.window > 0 && p < meta.seq_start[s] + meta.seq_count[s] - L.window) return;
  int64_t row;
  if (L.window > 0) {
    row = static_cast<int64_t>(meta.seq_slot[s]) * L.window + p % L.window;
  } else {
    row = static_cast<int64_t>(meta.block_tables[meta.seq_table[s] + p / L.block_size]) *
              L.block_size + p % L.block_size;
  }
  const int d = L.head_dim;
  const int64_t src = (static_cast<int64_t>(tok) * L.kv_heads + g) * d;
  const int64_t dst = (row * L.kv_heads + g) * d;
  for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
    *reinterpret_cast<uint4*>(L.k_cache + dst + c) = *reinterpret_cast<const uint4*>(k + src + c);
    *reinterpret_cast<uint4*>(L.v_cache + dst + c) = *reinterpret_cast<const uint4*>(v + src + c);
  }
}

template <int D>
Status LaunchFor(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
                 const bf16* v, int tokens, int splits, float* partial, bf16* out,
                 cudaStream_t stream) {
  const size_t smem = sizeof(float) * kRows * D + 2 * sizeof(bf16) * kKeys * (D + kPad) +
                      sizeof(float) * kRows * kKeys;
  static bool raised = false;
  if (!raised && smem > 48 * 1024) {
    GS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        AttentionKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    raised = true;
  }
  const dim3 grid(m.num_tiles, L.kv_heads, splits);
  AttentionKernel<D><<<grid, kThreads, smem, stream>>>(L, m, q, k, v, tokens, partial, out);
  GS_CUDA_CHECK_LAUNCH("AttentionKernel");
  if (splits > 1) {
    AttentionMergeKernel<<<dim3(tokens, L.heads), std::min(D, 256), 0, stream>>>(
        partial, splits, tokens, L.heads, D, out);
    GS_CUDA_CHECK_LAUNCH("AttentionMergeKernel");
  }
  return Ok();
}

}  // namespace

Status LaunchAttention(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* q,
                       const bf16* k, const bf16* v, int tokens, int splits, float* partial,
                       bf16* out, cudaStream_t stream) {
  if (tokens <= 0 || meta.num_tiles <= 0) return Ok();
  if (layer.kv_heads <= 0 || layer.heads % layer.kv_heads != 0 ||
      kRows % (layer.heads / layer.kv_heads) != 0) {
    return MakeError("LaunchAttention: GQA group ", layer.heads, "/", layer.kv_heads,
                     " must divide ", kRows);
  }
  if (splits < 1 || (splits > 1 && partial == nullptr)) {
    return MakeError("LaunchAttention: bad split count ", splits);
  }
  switch (layer.head_dim) {
    case 32: return LaunchFor<32>(layer, meta, q, k, v, tokens, splits, partial, out, stream);
    case 64: return LaunchFor<64>(layer, meta, q, k, v, tokens, splits, partial, out, stream);
    case 128: return LaunchFor<128>(layer, meta, q, k, v, tokens, splits, partial, out, stream);
    case 256: return LaunchFor<256>(layer, meta, q, k, v, tokens, splits, partial, out, stream);
    case 512: return LaunchFor<512>(layer, meta, q, k, v, tokens, splits, partial, out, stream);
    default:
      return MakeError("LaunchAttention: head_dim ", layer.head_dim,
                       " is not supported (32, 64, 128, 256, 512)");
  }
}

Status LaunchKvWrite(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* k,
                     const bf16* v, int tokens, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (layer.head_dim % 8 != 0) return MakeError("LaunchKvWrite: head_dim ", layer.head_dim);
  const int threads = std::max(32, std::min(256, layer.head_dim / 8));
  KvWriteKernel<<<dim3(tokens, layer.kv_heads), threads, 0, stream>>>(layer, meta, k, v);
  GS_CUDA_CHECK_LAUNCH("KvWriteKernel");
  return Ok();
}

}  // namespace gs::cuda
