// Prefill attention on tensor cores (flash-attention-2 form): a block takes 64 query rows —
// (tokens of one query tile) × (the q heads of one kv head) — and walks the tile's keys in smem
// tiles of 32 with an fp32 online softmax. Warps own 16 rows each; for head_dim 512 a second
// group of 4 warps owns the upper 256 output columns (both groups compute the same scores: the
// 16 × 512 fp32 output of one warp would not fit its registers).
//   S = Q·Kᵀ (mma m16n8k16, bf16 → fp32), masked (causal, window), × K scale (fp8)
//   m' = max(m, rowmax S); P = e^(S − m'); l' = l·e^(m − m') + ΣP; O = O·e^(m − m') + P̃·V
// where P̃ = P·Vscale as bf16 (one mma) or as hi + lo bf16 terms (two mmas, fp32-accurate; see
// SplitBf16x2): GS_ATTN_PREFILL_SPLIT_P=0 picks the first, default the second.
// K and V tiles are single-buffered but staggered: K of tile i+1 loads during P·V of tile i, and
// V of tile i+1 during the scores of tile i+1 (cp.async groups K, V, K, V, … in flight).
#include <cstdlib>
#include <cstring>

#include "runtime/cuda/attention_common.cuh"
#include "runtime/cuda/attention_internal.h"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

using namespace attn;

constexpr int kM = 64;  // query rows per block
constexpr int kN = 32;  // keys per smem tile

template <int D>
struct PrefillShape {
  static constexpr int kColGroups = D > 256 ? 2 : 1;
  static constexpr int kCols = D / kColGroups;  // output columns per warp
  static constexpr int kThreads = 128 * kColGroups;
  static constexpr int kStride = D + kPad;
  static size_t SmemBytes(bool fp8) {
    size_t b = sizeof(bf16) * (kM + 2 * kN) * kStride;
    if (fp8) b += 2 * kN * D + 2 * kN * sizeof(float);
    return b;
  }
};

template <int D, bool kFp8, bool kSplitP>
__global__ void __launch_bounds__(PrefillShape<D>::kThreads)
    PrefillAttentionKernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ q,
                           const bf16* __restrict__ k_new, const bf16* __restrict__ v_new,
                           int tokens, float* __restrict__ partial, bf16* __restrict__ out) {
  using Shape = PrefillShape<D>;
  constexpr int kStride = Shape::kStride, kCols = Shape::kCols, kThreads = Shape::kThreads;
  constexpr int kNt = kCols / 8;  // output n-tiles per warp
  static_assert(D % 16 == 0 && kCols % 16 == 0, "head_dim must be a multiple of 16");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);  // [kM][D + pad]
  bf16* ks = qs + kM * kStride;                   // [kN][D + pad]
  bf16* vs = ks + kN * kStride;                   // [kN][D + pad]
  uint8_t* k_stage = reinterpret_cast<uint8_t*>(vs + kN * kStride);  // fp8: [kN][D]
  uint8_t* v_stage = k_stage + kN * D;
  float* k_sc = reinterpret_cast<float*>(v_stage + kN * D);  // fp8: [kN]
  float* v_sc = k_sc + kN;

  // PDL (launch.cuh): the tile metadata, q, k/v and the cache all come from earlier kernels.
  GridDependencyWait();
  TriggerDependentsIfOneWave();
  const int g = blockIdx.y, group = L.heads / L.kv_heads;
  const TileInfo t = GetTile(meta, blockIdx.x, L.window);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rg = warp % 4, cg = warp / 4;  // row group (16 rows), column group

  const int n_tiles = (t.kend - t.kbeg + kN) / kN;
  int tile_begin, tile_end;
  SplitTiles(n_tiles, 2, &tile_begin, &tile_end);
  if (gridDim.z > 1 && tile_begin >= tile_end) {  // empty split: mark its partials empty
    if (tid < kM && tid / group < t.nq) {
      const int64_t row = static_cast<int64_t>(t.tok0 + tid / group) * L.heads + g * group +
                          tid % group;
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
      dst[D] = -INFINITY;
      dst[D + 1] = 0.0f;
    }
    return;
  }

  // Q rows (token qi = r / group, head g·group + r % group); rows past the tile are zeros.
  for (int i = tid; i < kM * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8, qi = r / group;
    bf16* dst = qs + r * kStride + c;
    if (qi < t.nq) {
      const int head = g * group + r % group;
      CpAsync16(dst, q + (static_cast<int64_t>(t.tok0 + qi) * L.heads + head) * D + c);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
  const KvSource ksrc{k_new, L.k_cache, L.k_scale}, vsrc{v_new, L.v_cache, L.v_scale};
  KvTileLoader<D, kN, kThreads, kFp8> kload, vload;
  kload.Issue(ksrc, L, meta, t, g, t.kbeg + tile_begin * kN, ks, k_stage, k_sc);  // with Q
  vload.Issue(vsrc, L, meta, t, g, t.kbeg + tile_begin * kN, vs, v_stage, v_sc);

  // This thread's two rows (lane / 4 and + 8 of the warp's 16).
  int pos[2];
  bool row_ok[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int qi = (rg * 16 + lane / 4 + 8 * h) / group;
    row_ok[h] = qi < t.nq;
    pos[h] = t.pos0 + qi;
  }
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[kNt][4];
#pragma unroll
  for (int i = 0; i < kNt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

  for (int kt = tile_begin; kt < tile_end; ++kt) {
    const int k0 = t.kbeg + kt * kN;
    CpAsyncWaitAllButOne();  // Q and this K tile (the V tile may still fly)
    kload.Finish(ks, k_stage, t, k0);
    __syncthreads();

    // S = Q·Kᵀ for the warp's 16 rows × 32 keys.
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll 4
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t a[4];
      Ldsm4(a, qs + (rg * 16 + (lane / 8 % 2) * 8 + lane % 8) * kStride + kk + (lane / 16) * 8);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        uint32_t b[4];
        Ldsm4(b, ks + (np * 16 + (lane / 16) * 8 + lane % 8) * kStride + kk + (lane / 8 % 2) * 8);
        Mma(s[2 * np], a, b[0], b[1]);
        Mma(s[2 * np + 1], a, b[2], b[3]);
      }
    }
    if constexpr (kFp8) {  // K scales, applied before the barrier frees k_sc for the next tile
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const float2 ksc = *reinterpret_cast<const float2*>(k_sc + nt * 8 + 2 * (lane % 4));
        s[nt][0] *= ksc.x;
        s[nt][1] *= ksc.y;
        s[nt][2] *= ksc.x;
        s[nt][3] *= ksc.y;
      }
    }
    __syncthreads();  // every warp is done with this K tile (and its scales)
    if (kt + 1 < tile_end) {
      kload.Issue(ksrc, L, meta, t, g, k0 + kN, ks, k_stage, k_sc);
    } else {
      CpAsyncCommit();  // keep one group per stage
    }

    // Mask, online softmax (each row's 32 scores live in the 4 lanes of a quad).
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int p = k0 + nt * 8 + 2 * (lane % 4) + e;
          float& x = s[nt][2 * h + e];
          bool visible;
          if (meta.key_limit == nullptr) {
            visible = Visible(p, pos[h], L.window);
          } else {  // reread per tile rather than held in registers, which are at their limit
            const int qi = (rg * 16 + lane / 4 + 8 * h) / group;
            visible = row_ok[h] && VisibleUpTo(p, pos[h], __ldg(meta.key_limit + t.tok0 + qi),
                                               L.window);
          }
          x = row_ok[h] && visible ? x : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[h], mx);
      const float base = m_new == -INFINITY ? 0.0f : m_new;
      alpha[h] = __expf(m_run[h] - base);  // 0 when m_run is −∞ and m_new finite; 1 if both −∞
      if (m_new == -INFINITY) alpha[h] = 1.0f;
      m_run[h] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * h + e];
          x = __expf(x - base);
          sum += x;
        }
      }
      l_run[h] = l_run[h] * alpha[h] + sum;
    }
#pragma unroll
    for (int i = 0; i < kNt; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }

    CpAsyncWaitAllButOne();  // this V tile (the next K tile may still fly)
    vload.Finish(vs, v_stage, t, k0);
    __syncthreads();

    // O += P·V: P's accumulator layout is the A operand layout (two n-tiles = one k-step);
    // with kSplitP, a second mma adds P's low bf16 part.
#pragma unroll
    for (int ks2 = 0; ks2 < 2; ++ks2) {
      uint32_t a[4], a_lo[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int nt = 2 * ks2 + i / 2, h = i % 2;  // a[i]: n-tile nt, row half h
        float p0 = s[nt][2 * h], p1 = s[nt][2 * h + 1];
        if constexpr (kFp8) {  // V scales read where used: registers are at their limit here
          const float2 vsc = *reinterpret_cast<const float2*>(v_sc + nt * 8 + 2 * (lane % 4));
          p0 *= vsc.x;
          p1 *= vsc.y;
        }
        if constexpr (kSplitP) {
          SplitBf16x2(p0, p1, &a[i], &a_lo[i]);
        } else {
          a[i] = PackBf16(p0, p1);
        }
      }
#pragma unroll
      for (int np = 0; np < kNt / 2; ++np) {
        uint32_t b[4];
        Ldsm4T(b, vs + (ks2 * 16 + (lane / 8 % 2) * 8 + lane % 8) * kStride + cg * kCols +
                      np * 16 + (lane / 16) * 8);
        if constexpr (kSplitP) {
          Mma(o[2 * np], a_lo, b[0], b[1]);
          Mma(o[2 * np + 1], a_lo, b[2], b[3]);
        }
        Mma(o[2 * np], a, b[0], b[1]);
        Mma(o[2 * np + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with this V tile
    if (kt + 1 < tile_end) {
      vload.Issue(vsrc, L, meta, t, g, k0 + kN, vs, v_stage, v_sc);
    } else {
      CpAsyncCommit();
    }
  }

  // Row sums across the quad, then the output (normalised bf16, or this split's partials).
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 1);
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!row_ok[h]) continue;
    const int r = rg * 16 + lane / 4 + 8 * h;
    const int64_t row = static_cast<int64_t>(t.tok0 + r / group) * L.heads + g * group + r % group;
    if (gridDim.z == 1) {
      const float inv = l_run[h] > 0.0f ? 1.0f / l_run[h] : 0.0f;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        const int col = cg * kCols + nt * 8 + 2 * (lane % 4);
        *reinterpret_cast<__nv_bfloat162*>(out + row * D + col) =
            __floats2bfloat162_rn(o[nt][2 * h] * inv, o[nt][2 * h + 1] * inv);
      }
    } else {
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        const int col = cg * kCols + nt * 8 + 2 * (lane % 4);
        *reinterpret_cast<float2*>(dst + col) = make_float2(o[nt][2 * h], o[nt][2 * h + 1]);
      }
      if (cg == 0 && lane % 4 == 0) {
        dst[D] = m_run[h];
        dst[D + 1] = l_run[h];
      }
    }
  }
}

template <int D, bool kFp8, bool kSplitP>
Status LaunchVariant(const AttentionLayer& L, const AttentionMeta& m, const bf16* q,
                     const bf16* k, const bf16* v, int tokens, int splits, float* partial,
                     bf16* out, cudaStream_t stream) {
  using Shape = PrefillShape<D>;
  const size_t smem = Shape::SmemBytes(kFp8);
  static bool raised = false;
  if (!raised && smem > 48 * 1024) {
    GS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(PrefillAttentionKernel<D, kFp8, kSplitP>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem)));
    raised = true;
  }
  const dim3 grid(m.num_tiles, L.kv_heads, splits);
  return LaunchKernel("PrefillAttentionKernel", PrefillAttentionKernel<D, kFp8, kSplitP>, grid,
                      Shape::kThreads, smem, stream, L, m, q, k, v, tokens, partial, out);
}

// GS_ATTN_PREFILL_SPLIT_P=0 turns the hi + lo P·V off (one bf16 mma; for speed comparisons).
bool PrefillSplitP() {
  static const bool on = [] {
    const char* env = std::getenv("GS_ATTN_PREFILL_SPLIT_P");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return on;
}

template <int D, bool kFp8>
Status Launch(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
              const bf16* v, int tokens, int splits, float* partial, bf16* out,
              cudaStream_t stream) {
  return PrefillSplitP()
             ? LaunchVariant<D, kFp8, true>(L, m, q, k, v, tokens, splits, partial, out, stream)
             : LaunchVariant<D, kFp8, false>(L, m, q, k, v, tokens, splits, partial, out, stream);
}

template <bool kFp8>
Status LaunchDtype(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
                   const bf16* v, int tokens, int splits, float* partial, bf16* out,
                   cudaStream_t stream) {
  switch (L.head_dim) {
    case 32: return Launch<32, kFp8>(L, m, q, k, v, tokens, splits, partial, out, stream);
    case 64: return Launch<64, kFp8>(L, m, q, k, v, tokens, splits, partial, out, stream);
    case 128: return Launch<128, kFp8>(L, m, q, k, v, tokens, splits, partial, out, stream);
    case 256: return Launch<256, kFp8>(L, m, q, k, v, tokens, splits, partial, out, stream);
    case 512: return Launch<512, kFp8>(L, m, q, k, v, tokens, splits, partial, out, stream);
    default:
      return MakeError("LaunchAttention: head_dim ", L.head_dim,
                       " is not supported (32, 64, 128, 256, 512)");
  }
}

}  // namespace

int PrefillTileRows() { return kM; }

Status LaunchPrefillAttention(const AttentionLayer& L, const AttentionMeta& m, const bf16* q,
                              const bf16* k, const bf16* v, int tokens, int splits,
                              float* partial, bf16* out, cudaStream_t stream) {
  return L.kv_dtype == KvDtype::kFp8E4m3 && !m.keys_all_new
             ? LaunchDtype<true>(L, m, q, k, v, tokens, splits, partial, out, stream)
             : LaunchDtype<false>(L, m, q, k, v, tokens, splits, partial, out, stream);
}

}  // namespace gs::cuda
