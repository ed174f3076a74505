// RMSNorms (Gemma 4: x·w, no 1 + w; fp32 inside, reference gemma4 §3.1) and the attention input
// preparation: per-head q/k/v norms and rotate-half RoPE (default and proportional, §3.4).
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/kv_store.cuh"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/qkv_norm_rope.cuh"
#include "runtime/cuda/row_common.cuh"

namespace gs::cuda {
namespace {

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < warps; ++i) total += scratch[i];
  return total;
}

// out[i] = bf16(x_r · (mean(x_r²) + eps)^-½ · w), r = row_index[i] or i. One block per row.
// Register-resident (row_common.cuh): the weights are loaded before the PDL wait (launch.cuh).
template <int kVec>
__global__ void __launch_bounds__(row::MaxThreads(2, kVec))
    RmsNormKernel(const float* __restrict__ x, const int* __restrict__ row_index, int width,
                  const float* __restrict__ w, float eps, bf16* __restrict__ out) {
  __shared__ float scratch[32];
  const int n4 = width / 4;
  float4 wv[kVec];
  if (w != nullptr) {
    row::LoadConst<kVec>(w, n4, wv);
  } else {
    row::Fill<kVec>(wv, 1.0f);  // unused
  }
  GridDependencyWait();  // x and row_index come from earlier kernels / copies
  TriggerDependentsIfOneWave();
  const int64_t r = row_index != nullptr ? row_index[blockIdx.x] : blockIdx.x;
  float4 xv[kVec];
  row::Load<kVec>(x + r * width, n4, xv);
  const float inv = rsqrtf(row::BlockSum(row::SumSquares<kVec>(xv), scratch) / width + eps);
  bf16* o = out + static_cast<int64_t>(blockIdx.x) * width;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    if (!row::Owns(j, n4)) continue;
    float4 v = make_float4(xv[j].x * inv, xv[j].y * inv, xv[j].z * inv, xv[j].w * inv);
    if (w != nullptr) v = make_float4(v.x * wv[j].x, v.y * wv[j].y, v.z * wv[j].z, v.w * wv[j].w);
    row::StoreBf16(o, j, v);
  }
}

// RmsNormKernel for any width: loops over global memory (two passes).
__global__ void RmsNormGenericKernel(const float* __restrict__ x, const int* __restrict__ row_index,
                                     int width, const float* __restrict__ w, float eps,
                                     bf16* __restrict__ out) {
  __shared__ float scratch[32];
  GridDependencyWait();  // PDL (launch.cuh): x and row_index come from earlier kernels / copies
  TriggerDependentsIfOneWave();
  const int64_t r = row_index != nullptr ? row_index[blockIdx.x] : blockIdx.x;
  const float* xr = x + r * width;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < width; c += blockDim.x) ss += xr[c] * xr[c];
  const float inv = rsqrtf(BlockSum(ss, scratch) / width + eps);
  bf16* o = out + static_cast<int64_t>(blockIdx.x) * width;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    const float v = xr[c] * inv;
    o[c] = __float2bfloat16_rn(w != nullptr ? v * w[c] : v);
  }
}

// h1 = h + a · rms(a)⁻¹ · w_post_attn (fp32 residual, in place), then the two FFN inputs
// x_dense = bf16(rms(h1) · w_pre_ffn), x_moe = bf16(rms(h1) · w_pre_ffn_2) and the router input
// rms(h1) · (router_scale · H^-½) in fp32 (the router's own scale-free norm of the same h1).
// One block per token, register-resident (row_common.cuh): the four weight rows are loaded
// before the PDL wait, a and h after it, then two block reductions (rms(a), rms(h1)) and the
// stores, all from registers.
template <int kVec>
__global__ void __launch_bounds__(row::MaxThreads(6, kVec))
    PostAttentionKernel(float* __restrict__ h, const float* __restrict__ attn, int hidden,
                        const float* __restrict__ post_attn, const float* __restrict__ pre_ffn,
                        const float* __restrict__ pre_ffn_2,
                        const float* __restrict__ router_scale, float eps,
                        bf16* __restrict__ x_dense, bf16* __restrict__ x_moe,
                        float* __restrict__ router_in) {
  __shared__ float scratch_a[32], scratch_h[32];
  const int n4 = hidden / 4;
  float4 wpa[kVec], wpf[kVec], wp2[kVec], wrs[kVec];
  row::LoadConst<kVec>(post_attn, n4, wpa);
  row::LoadConst<kVec>(pre_ffn, n4, wpf);
  if (x_moe != nullptr) {
    row::LoadConst<kVec>(pre_ffn_2, n4, wp2);
  } else {
    row::Fill<kVec>(wp2, 0.0f);  // unused
  }
  if (router_in != nullptr) {
    row::LoadConst<kVec>(router_scale, n4, wrs);
  } else {
    row::Fill<kVec>(wrs, 0.0f);  // unused
  }
  GridDependencyWait();  // PDL (launch.cuh): h and attn are activations
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  float* hr = h + t * hidden;
  float4 a[kVec], v[kVec];
  row::Load<kVec>(attn + t * hidden, n4, a);
  row::Load<kVec>(hr, n4, v);
  const float inv_h =
      row::AddNormedResidual<kVec>(v, a, wpa, hr, n4, hidden, eps, scratch_a, scratch_h).y;
  const float root = rsqrtf(static_cast<float>(hidden));
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    if (!row::Owns(j, n4)) continue;
    row::StoreNormedBf16(x_dense + t * hidden, j, v[j], inv_h, wpf[j]);
    if (x_moe != nullptr) row::StoreNormedBf16(x_moe + t * hidden, j, v[j], inv_h, wp2[j]);
    if (router_in != nullptr) {
      const float4 n =
          make_float4(v[j].x * inv_h, v[j].y * inv_h, v[j].z * inv_h, v[j].w * inv_h);
      row::Store(router_in + t * hidden, j,
                 make_float4(n.x * (wrs[j].x * root), n.y * (wrs[j].y * root),
                             n.z * (wrs[j].z * root), n.w * (wrs[j].w * root)));
    }
  }
}

// PostAttentionKernel for any width: loops over global memory (three passes).
__global__ void PostAttentionGenericKernel(float* __restrict__ h, const float* __restrict__ attn,
                                           int hidden, const float* __restrict__ post_attn,
                                           const float* __restrict__ pre_ffn,
                                           const float* __restrict__ pre_ffn_2,
                                           const float* __restrict__ router_scale, float eps,
                                           bf16* __restrict__ x_dense, bf16* __restrict__ x_moe,
                                           float* __restrict__ router_in) {
  __shared__ float scratch[32];
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  const float* a = attn + t * hidden;
  float* hr = h + t * hidden;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) ss += a[c] * a[c];
  const float inv_a = rsqrtf(BlockSum(ss, scratch) / hidden + eps);
  ss = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = hr[c] + a[c] * inv_a * post_attn[c];
    hr[c] = v;  // each thread rereads only its own columns below
    ss += v * v;
  }
  const float inv_h = rsqrtf(BlockSum(ss, scratch) / hidden + eps);
  const float root = rsqrtf(static_cast<float>(hidden));
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = hr[c] * inv_h;
    x_dense[t * hidden + c] = __float2bfloat16_rn(v * pre_ffn[c]);
    if (x_moe != nullptr) x_moe[t * hidden + c] = __float2bfloat16_rn(v * pre_ffn_2[c]);
    if (router_in != nullptr) router_in[t * hidden + c] = v * (router_scale[c] * root);
  }
}

// Appends row `row` (bf16 [d], this block's own output) of token t as kv head `kv_head` of K
// (kv_head < kv_heads) or V (kv_head − kv_heads) to the cache, as KvWrite{Bf16,Fp8}Kernel does.
// bf16: each thread rereads only the pairs (i, i + d/2) it wrote itself, so no barrier is needed
// before. fp8: each thread quantizes 8 consecutive values (kv::QuantizeE4m3x8, the cache's byte
// order), written by other threads — BlockMax's barrier orders those writes before the reads.
// Uniform over the block (BlockMax has barriers).
__device__ void AppendToCache(const AttentionLayer& L, const AttentionMeta& meta, int t,
                              int kv_head, const bf16* row, float* max_scratch) {
  const bool is_v = kv_head >= L.kv_heads;
  const int g = is_v ? kv_head - L.kv_heads : kv_head, d = L.head_dim;
  const int s = meta.token_seq[t], p = meta.positions[t];
  if (kv::Skip(L, meta, s, p)) return;
  const int64_t at = (kv::WriteRow(L, meta, s, p) * L.kv_heads + g) * d;
  const int half = d / 2;
  if (L.kv_dtype == KvDtype::kBf16) {
    bf16* cache = static_cast<bf16*>(is_v ? L.v_cache : L.k_cache) + at;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      cache[i] = row[i];
      cache[i + half] = row[i + half];
    }
    return;
  }
  float amax = 0.0f;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float a = fabsf(__bfloat162float(row[i])), b = fabsf(__bfloat162float(row[i + half]));
    amax = fmaxf(amax, fmaxf(a, b));
  }
  const float scale = fp8kv::RowScale(kv::BlockMax(amax, max_scratch)), inv = 1.0f / scale;
  uint8_t* cache = static_cast<uint8_t*>(is_v ? L.v_cache : L.k_cache) + at;
  for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
    *reinterpret_cast<uint2*>(cache + c) =
        kv::QuantizeE4m3x8(*reinterpret_cast<const uint4*>(row + c), inv);
  }
  if (threadIdx.x == 0) {  // stored as s · 2^120 (fp8_kv_layout.h)
    (is_v ? L.v_scale : L.k_scale)[(at / d)] = fp8kv::StoredScale(scale);
  }
}

// One block per (token, head) over heads q (0..H-1), k (H..H+kv-1), v (H+kv..H+2kv-1); thread i
// owns the rotation pair (i, i + d/2):
//   x  = rms(x) (⊙ q_norm / k_norm; v is scale-free; on k_eq_v layers v is the raw k)
//   q, k: (x_i, x_{i+d/2}) rotated by angle = float(pos)·inv_freq[i] (sincosf on the fp32 angle,
//   as PyTorch; inv_freq 0 leaves the pair as it is — proportional RoPE's static part).
// kCache (decode fusion): the k and v blocks also append their row to the KV cache of L exactly
// as KvWrite{Bf16,Fp8}Kernel would (same row, same bytes, same FP8 scale).
template <bool kCache>
__global__ void QkvNormRopeKernel(const float* __restrict__ qkv, int heads, int kv_heads, int d,
                                  bool k_eq_v, const float* __restrict__ q_norm,
                                  const float* __restrict__ k_norm,
                                  const float* __restrict__ inv_freq,
                                  const int* __restrict__ positions, float eps,
                                  bf16* __restrict__ q, bf16* __restrict__ k,
                                  bf16* __restrict__ v, AttentionLayer L, AttentionMeta meta) {
  __shared__ float scratch[32];
  __shared__ float max_scratch[32];
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  const int head = blockIdx.y;
  const int row = (heads + (k_eq_v ? 1 : 2) * kv_heads) * d;
  const float* src;
  const float* w = nullptr;
  bf16* dst;
  bool rope = true;
  if (head < heads) {
    src = qkv + t * row + head * d;
    w = q_norm;
    dst = q + (t * heads + head) * d;
  } else if (head < heads + kv_heads) {
    const int g = head - heads;
    src = qkv + t * row + (heads + g) * d;
    w = k_norm;
    dst = k + (t * kv_heads + g) * d;
  } else {
    const int g = head - heads - kv_heads;
    src = qkv + t * row + (heads + (k_eq_v ? 0 : kv_heads) + g) * d;
    dst = v + (t * kv_heads + g) * d;
    rope = false;
  }
  // The arithmetic is qkv_norm_rope.cuh's, which the fused decode attention repeats bit for bit
  // (its sum-of-squares order assumes blockDim.x == qkv::NormThreads(d)).
  const int half = d / 2;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss = qkv::AddSquare(ss, src[i]);
  const float inv = qkv::InvRms(BlockSum(ss, scratch), d, eps);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const bool weighted = w != nullptr, rotate = rope && inv_freq[i] != 0.0f;
    float sn = 0.0f, cs = 1.0f;
    if (rotate) qkv::RopeSinCos(positions[t], inv_freq[i], &sn, &cs);
    const float2 x = qkv::NormRopePair(src[i], src[i + half], inv, weighted,
                                       weighted ? w[i] : 0.0f, weighted ? w[i + half] : 0.0f,
                                       rotate, sn, cs);
    dst[i] = __float2bfloat16_rn(x.x);
    dst[i + half] = __float2bfloat16_rn(x.y);
  }
  if constexpr (kCache) {
    if (head >= heads) AppendToCache(L, meta, static_cast<int>(t), head - heads, dst, max_scratch);
  }
}

}  // namespace

int RowThreads(int rows) {
  // One block per row: with few rows (decode) only a few SMs work, so each row gets the widest
  // block (shorter per-thread loops, more loads in flight); many rows fill the GPU with 256.
  return rows <= 64 ? 1024 : 256;
}

namespace {
bool force_generic_rows = false;
}  // namespace

bool row::ForcedGeneric() { return force_generic_rows; }
void SetRowKernelsGeneric(bool generic) { force_generic_rows = generic; }

Status LaunchRmsNorm(const float* x, const int* row_index, int rows, int width, const float* w,
                     float eps, bf16* out, cudaStream_t stream) {
  if (rows <= 0) return Ok();
  if (width <= 0) return MakeError("LaunchRmsNorm: width ", width, " must be > 0");
  const row::Shape shape = row::ShapeFor(width, 2, row::kMaxVec, x, w, out);
  auto launch = [&](auto kernel) {
    return LaunchKernel("RmsNormKernel", kernel, rows, shape.threads, 0, stream, x, row_index,
                        width, w, eps, out);
  };
  switch (shape.vec) {
    case 1: return launch(RmsNormKernel<1>);
    case 2: return launch(RmsNormKernel<2>);
    case 3: return launch(RmsNormKernel<3>);
    case 4: return launch(RmsNormKernel<4>);
    default:
      return LaunchKernel("RmsNormGenericKernel", RmsNormGenericKernel, rows, RowThreads(rows), 0,
                          stream, x, row_index, width, w, eps, out);
  }
}

Status LaunchPostAttention(float* h, const float* attn, int tokens, int hidden,
                           const float* post_attn, const float* pre_ffn, const float* pre_ffn_2,
                           const float* router_scale, float eps, bf16* x_dense, bf16* x_moe,
                           float* router_in, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (hidden <= 0) return MakeError("LaunchPostAttention: hidden ", hidden, " must be > 0");
  if (router_in != nullptr && router_scale == nullptr) {
    return MakeError("LaunchPostAttention: router_in needs router_scale");
  }
  if (x_moe != nullptr && pre_ffn_2 == nullptr) {
    return MakeError("LaunchPostAttention: x_moe needs pre_ffn_2");
  }
  const row::Shape shape = row::ShapeFor(hidden, 6, row::kMaxVec, h, attn, post_attn, pre_ffn,
                                    pre_ffn_2, router_scale, x_dense, x_moe, router_in);
  auto launch = [&](auto kernel) {
    return LaunchKernel("PostAttentionKernel", kernel, tokens, shape.threads, 0, stream, h, attn,
                        hidden, post_attn, pre_ffn, pre_ffn_2, router_scale, eps, x_dense, x_moe,
                        router_in);
  };
  switch (shape.vec) {
    case 1: return launch(PostAttentionKernel<1>);
    case 2: return launch(PostAttentionKernel<2>);
    case 3: return launch(PostAttentionKernel<3>);
    case 4: return launch(PostAttentionKernel<4>);
    default:
      return LaunchKernel("PostAttentionGenericKernel", PostAttentionGenericKernel, tokens,
                          RowThreads(tokens), 0, stream, h, attn, hidden, post_attn, pre_ffn,
                          pre_ffn_2, router_scale, eps, x_dense, x_moe, router_in);
  }
}

Status LaunchQkvNormRope(const float* qkv, int tokens, int heads, int kv_heads, int head_dim,
                         bool k_eq_v, const float* q_norm, const float* k_norm,
                         const float* inv_freq, const int* positions, float eps, bf16* q, bf16* k,
                         bf16* v, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (head_dim % 2 != 0) return MakeError("LaunchQkvNormRope: odd head_dim ", head_dim);
  const dim3 grid(tokens, heads + 2 * kv_heads);
  const int threads = qkv::NormThreads(head_dim);
  return LaunchKernel("QkvNormRopeKernel", QkvNormRopeKernel<false>, grid, threads, 0, stream, qkv,
                      heads, kv_heads, head_dim, k_eq_v, q_norm, k_norm, inv_freq, positions, eps,
                      q, k, v, AttentionLayer{}, AttentionMeta{});
}

Status LaunchQkvNormRopeKv(const float* qkv, int tokens, int heads, bool k_eq_v,
                           const float* q_norm, const float* k_norm, const float* inv_freq,
                           float eps, const AttentionLayer& layer, const AttentionMeta& meta,
                           bf16* q, bf16* k, bf16* v, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  const int d = layer.head_dim;
  if (d % 2 != 0) return MakeError("LaunchQkvNormRopeKv: odd head_dim ", d);
  if (layer.kv_dtype == KvDtype::kFp8E4m3 && (!layer.k_scale || !layer.v_scale)) {
    return MakeError("LaunchQkvNormRopeKv: FP8 cache without scales");
  }
  if (layer.kv_dtype == KvDtype::kFp8E4m3 && d % 8 != 0) {  // whole groups of the byte order
    return MakeError("LaunchQkvNormRopeKv: FP8 cache with head_dim ", d, " (not a multiple of 8)");
  }
  const dim3 grid(tokens, heads + 2 * layer.kv_heads);
  const int threads = qkv::NormThreads(d);
  return LaunchKernel("QkvNormRopeKernel<cache>", QkvNormRopeKernel<true>, grid, threads, 0, stream,
                      qkv, heads, layer.kv_heads, d, k_eq_v, q_norm, k_norm, inv_freq,
                      meta.positions, eps, q, k, v, layer, meta);
}

}  // namespace gs::cuda
