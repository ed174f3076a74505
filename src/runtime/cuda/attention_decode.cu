// Decode attention on tensor cores: a query tile has at most 8 rows (tokens × the q heads of one
// kv head: GQA group 2 → 4 tokens, group 8 → 1), so the products run transposed, with the keys
// and head dims as the mma's 16-row side and the ≤ 8 query rows as its 8-column side:
//   Sᵀ (16 keys × 8 rows) = K·Qᵀ,   Oᵀ (16 dims × 8 rows) += Vᵀ·Pᵀ_hi + Vᵀ·Pᵀ_lo
// (P split into two bf16 terms, see SplitBf16x2). Pᵀ's accumulator is turned into the B operand of the second product with movmatrix.trans.
// A block (4 warps) loads 64-key tiles; each warp takes 16 of them with its own online softmax,
// and the warps' (m, l, O) merge through smem at the end. Long contexts also split over blocks
// (flash-decoding, gridDim.z) and merge in AttentionMergeKernel.
#include "runtime/cuda/attention_common.cuh"
#include "runtime/cuda/attention_internal.h"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

using namespace attn;

constexpr int kR = 8;        // query rows per tile
constexpr int kN = 64;       // keys per smem tile
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

template <int D>
struct DecodeShape {
  static constexpr int kStride = D + kPad;
  static constexpr int kRedStride = D + 4;  // fp32 rows of the cross-warp merge
  static size_t SmemBytes(bool fp8) {
    size_t b = sizeof(bf16) * (kR + 2 * kN) * kStride;
    if (fp8) b += 2 * kN * D + 2 * kN * sizeof(float);
    b += sizeof(float) * 2 * kWarps * kR;  // per-warp m, l
    return b;
  }
};

template <int D, bool kFp8>
__global__ void __launch_bounds__(kThreads)
    DecodeAttentionKernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ q,
                          const bf16* __restrict__ k_new, const bf16* __restrict__ v_new,
                          int tokens, float* __restrict__ partial, bf16* __restrict__ out,
                          bool one_wave) {
  using Shape = DecodeShape<D>;
  constexpr int kStride = Shape::kStride, kRed = Shape::kRedStride;
  constexpr int kMt = D / 16;  // head-dim tiles of Oᵀ
  static_assert(D % 16 == 0, "head_dim must be a multiple of 16");
  static_assert(kWarps * kR * kRed * sizeof(float) <= 2 * kN * kStride * sizeof(bf16),
                "the merge buffer reuses the K/V tiles");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);  // [kR][D + pad]
  bf16* ks = qs + kR * kStride;                   // [kN][D + pad]
  bf16* vs = ks + kN * kStride;                   // [kN][D + pad]
  float* red = reinterpret_cast<float*>(ks);      // after the loop: [warps][kR][D + 4]
  float* wm = reinterpret_cast<float*>(vs + kN * kStride);  // [warps][kR]
  float* wl = wm + kWarps * kR;
  uint8_t* k_stage = reinterpret_cast<uint8_t*>(wl + kWarps * kR);  // fp8: [kN][D]
  uint8_t* v_stage = k_stage + kN * D;
  float* k_sc = reinterpret_cast<float*>(v_stage + kN * D);  // fp8: [kN]
  float* v_sc = k_sc + kN;

  // PDL (launch.cuh): the tile metadata, q, k/v and the cache all come from earlier kernels.
  GridDependencyWait();
  if (one_wave) TriggerDependents();
  const int g = blockIdx.y, group = L.heads / L.kv_heads;
  const TileInfo t = GetTile(meta, blockIdx.x, L.window);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rows = t.nq * group;  // ≤ kR

  const int n_tiles = (t.kend - t.kbeg + kN) / kN;
  int tile_begin, tile_end;
  SplitTiles(n_tiles, 1, &tile_begin, &tile_end);
  if (gridDim.z > 1 && tile_begin >= tile_end) {
    if (tid < rows) {
      const int64_t row = static_cast<int64_t>(t.tok0 + tid / group) * L.heads + g * group +
                          tid % group;
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
      dst[D] = -INFINITY;
      dst[D + 1] = 0.0f;
    }
    return;
  }

  for (int i = tid; i < kR * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    bf16* dst = qs + r * kStride + c;
    if (r < rows) {
      const int head = g * group + r % group;
      CpAsync16(dst, q + (static_cast<int64_t>(t.tok0 + r / group) * L.heads + head) * D + c);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
  const KvSource ksrc{k_new, L.k_cache, L.k_scale}, vsrc{v_new, L.v_cache, L.v_scale};
  KvTileLoader<D, kN, kThreads, kFp8> kload, vload;
  kload.Issue(ksrc, L, meta, t, g, t.kbeg + tile_begin * kN, ks, k_stage, k_sc);  // with Q
  vload.Issue(vsrc, L, meta, t, g, t.kbeg + tile_begin * kN, vs, v_stage, v_sc);

  // This lane's two query rows (the columns 2·(lane % 4) and + 1 of Sᵀ and Oᵀ).
  int pos[2];
  bool row_ok[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int r = 2 * (lane % 4) + e;
    row_ok[e] = r < rows;
    pos[e] = t.pos0 + r / group;
  }
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[kMt][4];
#pragma unroll
  for (int i = 0; i < kMt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  const int kw = warp * 16;  // the warp's keys within a tile

  for (int kt = tile_begin; kt < tile_end; ++kt) {
    const int k0 = t.kbeg + kt * kN;
    CpAsyncWaitAllButOne();
    kload.Finish(ks, k_stage, t, k0);
    __syncthreads();

    // Sᵀ = K·Qᵀ: 16 keys × 8 rows.
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 8
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t a[4], b[2];
      Ldsm4(a, ks + (kw + (lane / 8 % 2) * 8 + lane % 8) * kStride + kk + (lane / 16) * 8);
      Ldsm2(b, qs + (lane % 8) * kStride + kk + (lane / 8 % 2) * 8);
      Mma(s, a, b[0], b[1]);
    }
    // s[0], s[1]: key kw + lane/4, rows 2(lane%4) + 0/1; s[2], s[3]: key + 8.
    float ksc[2] = {1.0f, 1.0f}, vsc[2] = {1.0f, 1.0f};
    if constexpr (kFp8) {
      ksc[0] = k_sc[kw + lane / 4];
      ksc[1] = k_sc[kw + lane / 4 + 8];
    }
    __syncthreads();
    if (kt + 1 < tile_end) {
      kload.Issue(ksrc, L, meta, t, g, k0 + kN, ks, k_stage, k_sc);
    } else {
      CpAsyncCommit();
    }

    float alpha[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float mx = -INFINITY;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int p = k0 + kw + lane / 4 + 8 * h;
        float& x = s[2 * h + e];
        x = row_ok[e] && Visible(p, pos[e], L.window) ? x * ksc[h] : -INFINITY;
        mx = fmaxf(mx, x);
      }
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m_run[e], mx);
      const float base = m_new == -INFINITY ? 0.0f : m_new;
      alpha[e] = m_new == -INFINITY ? 1.0f : __expf(m_run[e] - base);
      m_run[e] = m_new;
      s[e] = __expf(s[e] - base);
      s[2 + e] = __expf(s[2 + e] - base);
      l_run[e] = l_run[e] * alpha[e] + s[e] + s[2 + e];
    }
#pragma unroll
    for (int i = 0; i < kMt; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[1];
      o[i][2] *= alpha[0];
      o[i][3] *= alpha[1];
    }

    CpAsyncWaitAllButOne();
    vload.Finish(vs, v_stage, t, k0);
    __syncthreads();
    if constexpr (kFp8) {
      vsc[0] = v_sc[kw + lane / 4];
      vsc[1] = v_sc[kw + lane / 4 + 8];
    }
    // Pᵀ (keys × rows) → B operand (k = keys, n = rows) by transposing each 8×8 half. P goes in
    // as hi + lo bf16 terms (fp32-accurate P·V, like the scalar kernel before): bf16 P alone
    // moved outputs by ~2^-9 relative, which the random MoE demo's router amplified into
    // flips; the second mma is nearly free here (decode is bound by loading K/V).
    uint32_t h0, l0, h1, l1;
    SplitBf16x2(s[0] * vsc[0], s[1] * vsc[0], &h0, &l0);
    SplitBf16x2(s[2] * vsc[1], s[3] * vsc[1], &h1, &l1);
    const uint32_t bh0 = MovTrans(h0), bh1 = MovTrans(h1), bl0 = MovTrans(l0), bl1 = MovTrans(l1);
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt) {
      uint32_t a[4];
      Ldsm4T(a, vs + (kw + (lane / 16) * 8 + lane % 8) * kStride + mt * 16 + (lane / 8 % 2) * 8);
      Mma(o[mt], a, bl0, bl1);
      Mma(o[mt], a, bh0, bh1);
    }
    __syncthreads();
    if (kt + 1 < tile_end) {
      vload.Issue(vsrc, L, meta, t, g, k0 + kN, vs, v_stage, v_sc);
    } else {
      CpAsyncCommit();
    }
  }

  // Merge the warps: M = max_w m_w, f_w = e^(m_w − M), O = Σ f_w O_w, l = Σ f_w l_w.
#pragma unroll
  for (int e = 0; e < 2; ++e) {
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) l_run[e] += __shfl_xor_sync(0xffffffffu, l_run[e], off);
  }
  if (lane < 4) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      wm[warp * kR + 2 * lane + e] = m_run[e];
      wl[warp * kR + 2 * lane + e] = l_run[e];
    }
  }
  // The loop's last barrier ordered every read of the tiles before these writes.
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt) {
    const int d = mt * 16 + lane / 4, r = 2 * (lane % 4);
    float* base = red + (warp * kR + r) * kRed + d;
    base[0] = o[mt][0];
    base[kRed] = o[mt][1];
    base[8] = o[mt][2];
    base[kRed + 8] = o[mt][3];
  }
  __syncthreads();
  for (int i = tid; i < rows * (D / 2); i += kThreads) {
    const int r = i / (D / 2), c = (i % (D / 2)) * 2;
    float mw[kWarps], m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      mw[w] = wm[w * kR + r];
      m = fmaxf(m, mw[w]);
    }
    float l = 0.0f, o0 = 0.0f, o1 = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      if (mw[w] == -INFINITY) continue;
      const float f = __expf(mw[w] - m);
      l += f * wl[w * kR + r];
      const float2 v = *reinterpret_cast<const float2*>(red + (w * kR + r) * kRed + c);
      o0 += f * v.x;
      o1 += f * v.y;
    }
    const int64_t row = static_cast<int64_t>(t.tok0 + r / group) * L.heads + g * group + r % group;
    if (gridDim.z == 1) {
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      *reinterpret_cast<__nv_bfloat162*>(out + row * D + c) = __floats2bfloat162_rn(o0 * inv, o1 * inv);
    } else {
      float* dst = partial + (static_cast<int64_t>(blockIdx.z) * tokens * L.heads + row) * (D + 2);
      *reinterpret_cast<float2*>(dst + c) = make_float2(o0, o1);
      if (c == 0) {
        dst[D] = m;
        dst[D + 1] = l;
      }
    }
  }
}

template <int D, bool kFp8>
Status Launch(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
              const bf16* v, int tokens, int splits, float* partial, bf16* out,
              cudaStream_t stream) {
  const size_t smem = DecodeShape<D>::SmemBytes(kFp8);
  static bool raised = false;
  if (!raised && smem > 48 * 1024) {
    GS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(DecodeAttentionKernel<D, kFp8>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem)));
    raised = true;
  }
  const dim3 grid(m.num_tiles, L.kv_heads, splits);
  static const int resident = ResidentBlocks(DecodeAttentionKernel<D, kFp8>, kThreads, smem);
  const bool one_wave = static_cast<int64_t>(grid.x) * grid.y * grid.z <= resident;
  return LaunchKernel("DecodeAttentionKernel", DecodeAttentionKernel<D, kFp8>, grid, kThreads, smem,
                      stream, L, m, q, k, v, tokens, partial, out, one_wave);
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

int DecodeTileRows() { return kR; }

Status LaunchDecodeAttention(const AttentionLayer& L, const AttentionMeta& m, const bf16* q,
                             const bf16* k, const bf16* v, int tokens, int splits, float* partial,
                             bf16* out, cudaStream_t stream) {
  return L.kv_dtype == KvDtype::kFp8E4m3
             ? LaunchDtype<true>(L, m, q, k, v, tokens, splits, partial, out, stream)
             : LaunchDtype<false>(L, m, q, k, v, tokens, splits, partial, out, stream);
}

}  // namespace gs::cuda
