// The router folded through the attention output projection (decode, one token a step).
//
// The fp32 router sees rms(h1)·(router_scale·H^-½) with h1 = h + rms(o)·w_post ⊙ o and
// o = W_o · attn (reference gemma4 §3.5-3.6). Everything between attn and the logits is linear
// except the two rms factors, which are scalars per token:
//   logits_e = inv_h · Σ_c R'[e,c]·h1[c]                 R'[e,c] = W_r[e,c]·router_scale[c]·H^-½
//            = inv_h · (A_e + inv_a · B_e)
//   A_e = Σ_c R'[e,c]·h[c]                               (h: the layer's input residual, fp32)
//   B_e = Σ_j C[e,j]·attn[j]                             C[e,j] = Σ_c R'[e,c]·w_post[c]·W_o[c,j]
// with inv_a = rms(o)⁻¹ and inv_h = rms(h1)⁻¹. So A can be computed while the attention runs
// (RouterFoldHKernel over h, on the side stream), B as 2·E extra rows of the o projection (C as
// bf16 hi + lo pairs: ~16 bits of mantissa, against the fp32 router's 24; on the H100 the logits
// stay within ~1e-6 of their spread of the exact ones, Moe.FoldedRouterRoutesAsTheRouter), and
// the post-attention kernel, which has inv_a and inv_h anyway, finishes the logits and selects
// the experts itself: the router's own kernel, its grid-wide count and its last block leave the
// decode chain.
//
// RouterFoldKernel builds R' and C once at load; PostAttentionRoutedKernel is
// PostAttentionKernel (norm_rope.cu) plus the logits and the top-k.
#include <cmath>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/router_topk.cuh"
#include "runtime/cuda/row_common.cuh"

namespace gs::cuda {
namespace {

constexpr int kFoldThreads = 128;  // one column j of C per thread
constexpr int kFoldExperts = 8;    // rows e of C per block
constexpr int kHWarps = 4;         // RouterFoldHKernel: experts (one a warp) per block
constexpr int kHRowVec = 24;       // float4s of a router row a lane holds (hidden ≤ 3072)
// Float4 rows a PostAttentionRoutedKernel thread holds per vec (row_common.cuh), as
// PostAttentionKernel: the block sizes and register caps of the two match.
constexpr int kRoutedRows = 6;

__device__ __forceinline__ int LoadAcquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// A[e] = Σ_c r_scaled[e, c]·h[c] in fp32 for one token, one warp per expert: lane l holds the
// float4s l, l + 32, … of the row (loaded before the PDL wait: a constant) and sums them in
// ascending order, then a shuffle sum (a fixed order). Then each block counts itself in `done`
// (after a fence): the post-attention kernel, on the other stream, waits for the count instead
// of an event join, which would cost it its early (PDL) launch. Few, small blocks (32 at 128
// experts): the kernel runs beside the q/k/v projection and the attention, and must not hold
// the SM resources the attention's blocks wait for.
__global__ void __launch_bounds__(kHWarps * 32)
    RouterFoldHKernel(const float* __restrict__ h, int hidden,
                      const float* __restrict__ r_scaled, int experts, float* __restrict__ a,
                      int* done) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int e = blockIdx.x * kHWarps + warp;
  const int n4 = hidden / 4;
  const float4* w =
      reinterpret_cast<const float4*>(r_scaled + static_cast<int64_t>(min(e, experts - 1)) * hidden);
  float4 wv[kHRowVec];
#pragma unroll
  for (int i = 0; i < kHRowVec; ++i) {
    const int c = lane + 32 * i;
    wv[i] = c < n4 ? __ldg(w + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  GridDependencyWait();  // PDL (launch.cuh): h is an activation
  TriggerDependentsIfOneWave();
  const float4* hr = reinterpret_cast<const float4*>(h);
  float acc = 0.0f;
#pragma unroll
  for (int i = 0; i < kHRowVec; ++i) {
    const int c = lane + 32 * i;
    if (c < n4) {
      const float4 hv = hr[c];
      acc += wv[i].x * hv.x + wv[i].y * hv.y + wv[i].z * hv.z + wv[i].w * hv.w;
    }
  }
  acc = row::WarpSum(acc);
  if (lane == 0 && e < experts) a[e] = acc;
  __threadfence();  // this warp's A is visible device-wide before the block counts
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(done, 1);
}

// C[e0 .. e0+7, j] for one column j per thread, summing c in ascending order in fp32: each block
// stages R'[e, c]·w_post[c] for 128 values of c in shared memory, every thread streams its column
// of W_o (coalesced across the block). Stored as hi = bf16(C), lo = bf16(C − hi) in rows e and
// E + e of `c_rows` ([2E, Q]). R' itself goes to `r_scaled` ([E, H]) from the blocks of column
// tile 0.
__global__ void __launch_bounds__(kFoldThreads)
    RouterFoldKernel(const float* __restrict__ router, const float* __restrict__ router_scale,
                     const float* __restrict__ post_attn, const bf16* __restrict__ o, int experts,
                     int hidden, int q_rows, float* __restrict__ r_scaled,
                     bf16* __restrict__ c_rows) {
  __shared__ float coef[kFoldExperts][kFoldThreads];
  const int j = blockIdx.x * kFoldThreads + threadIdx.x;
  const int e0 = blockIdx.y * kFoldExperts;
  const float root = rsqrtf(static_cast<float>(hidden));  // as PostAttentionKernel
  float acc[kFoldExperts] = {};
  for (int c0 = 0; c0 < hidden; c0 += kFoldThreads) {
    const int c = c0 + threadIdx.x;
#pragma unroll
    for (int i = 0; i < kFoldExperts; ++i) {
      float r = 0.0f;
      if (e0 + i < experts && c < hidden) {
        r = router[static_cast<int64_t>(e0 + i) * hidden + c] * (router_scale[c] * root);
        if (blockIdx.x == 0) r_scaled[static_cast<int64_t>(e0 + i) * hidden + c] = r;
        r *= post_attn[c];
      }
      coef[i][threadIdx.x] = r;
    }
    __syncthreads();
    const int n = min(kFoldThreads, hidden - c0);
    if (j < q_rows) {
      for (int cc = 0; cc < n; ++cc) {
        const float w = __bfloat162float(o[static_cast<int64_t>(c0 + cc) * q_rows + j]);
#pragma unroll
        for (int i = 0; i < kFoldExperts; ++i) acc[i] += coef[i][cc] * w;
      }
    }
    __syncthreads();  // coef is rewritten by the next chunk
  }
  if (j >= q_rows) return;
#pragma unroll
  for (int i = 0; i < kFoldExperts; ++i) {
    if (e0 + i >= experts) break;
    const bf16 hi = __float2bfloat16_rn(acc[i]);
    const bf16 lo = __float2bfloat16_rn(acc[i] - __bfloat162float(hi));
    c_rows[static_cast<int64_t>(e0 + i) * q_rows + j] = hi;
    c_rows[static_cast<int64_t>(experts + e0 + i) * q_rows + j] = lo;
  }
}

// One token: PostAttentionKernel's h1, x_dense and x_moe, then the folded logits (stored to
// `logits` too) and the top-k by warp 0: ids and weights [top_k], ungrouped (the experts' GEMVs
// take slot j's bank from ids[j]: GemmRows::one_token_slots), and active_count = top_k (0 for a
// padding token). `attn` is [o (hidden) | B hi (E) | B lo (E)]. Thread e < experts owns logit e;
// it reads A once RouterFoldHKernel's `a_blocks` blocks have counted themselves in `a_done`,
// before the PDL wait: A comes from the other stream, ordered by that count alone, and is long
// done by then, so its two dependent loads leave the chain. The block resets the count.
template <int kVec>
__global__ void __launch_bounds__(row::MaxThreads(kRoutedRows, kVec))
    PostAttentionRoutedKernel(float* __restrict__ h, const float* __restrict__ attn, int hidden,
                              int experts, const float* __restrict__ router_a,
                              const float* __restrict__ post_attn,
                              const float* __restrict__ pre_ffn,
                              const float* __restrict__ pre_ffn_2, float eps,
                              bf16* __restrict__ x_dense, bf16* __restrict__ x_moe, float* logits,
                              int top_k, const float* __restrict__ per_expert_scale,
                              const int* valid_tokens, int* topk_ids, float* topk_weights,
                              int* active_count, int* a_done, int a_blocks) {
  __shared__ float scratch_a[32], scratch_h[32];
  __shared__ float lg[kTopkMaxExperts];
  const int n4 = hidden / 4;
  float4 wpa[kVec], wpf[kVec], wp2[kVec];
  row::LoadConst<kVec>(post_attn, n4, wpa);
  row::LoadConst<kVec>(pre_ffn, n4, wpf);
  row::LoadConst<kVec>(pre_ffn_2, n4, wp2);
  const int e = threadIdx.x;
  float ra = 0.0f;
  if (e < experts) {
    while (LoadAcquire(a_done) < a_blocks) {
    }
    ra = __ldcg(router_a + e);
  }
  GridDependencyWait();  // PDL (launch.cuh): h and attn are activations
  TriggerDependentsIfOneWave();
  float4 a[kVec], v[kVec];
  row::Load<kVec>(attn, n4, a);
  row::Load<kVec>(h, n4, v);
  float b_hi = 0.0f, b_lo = 0.0f;
  if (e < experts) {
    b_hi = attn[hidden + e];
    b_lo = attn[hidden + experts + e];
  }
  const bool valid = valid_tokens == nullptr || *valid_tokens > 0;
  const float2 inv =
      row::AddNormedResidual<kVec>(v, a, wpa, h, n4, hidden, eps, scratch_a, scratch_h);
  const float inv_a = inv.x, inv_h = inv.y;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    if (!row::Owns(j, n4)) continue;
    row::StoreNormedBf16(x_dense, j, v[j], inv_h, wpf[j]);
    row::StoreNormedBf16(x_moe, j, v[j], inv_h, wp2[j]);
  }
  if (e < experts) {
    const float l = inv_h * (ra + inv_a * (b_hi + b_lo));
    lg[e] = l;
    logits[e] = l;
  }
  __syncthreads();  // lg complete; every thread is past its wait on a_done
  if (threadIdx.x == 0) *a_done = 0;  // every A block has counted: ready for the next launch
  if (threadIdx.x >= 32) return;
  float lv[kTopkPerLane];
#pragma unroll
  for (int i = 0; i < kTopkPerLane; ++i) {
    const int x = threadIdx.x + 32 * i;
    lv[i] = x < experts ? lg[x] : -INFINITY;
  }
  const TopkPick pick = WarpTopKOf(lv, experts, top_k, per_expert_scale);
  if (threadIdx.x < top_k) {
    topk_ids[threadIdx.x] = pick.id;
    topk_weights[threadIdx.x] = pick.weight;
  }
  if (threadIdx.x == 0) *active_count = valid ? top_k : 0;
}

}  // namespace

bool RouterFoldServes(int hidden, int experts, int top_k) {
  // The fold needs the register-resident post-attention (a thread per expert) and, for the
  // in-kernel selection, top_k within one warp's picks.
  return experts > 0 && experts <= kTopkMaxExperts && top_k > 0 && top_k <= experts &&
         top_k <= kTopkMaxK && hidden % 4 == 0 && hidden <= 4 * 32 * kHRowVec &&
         row::PickShape(hidden / 4, kRoutedRows, row::kMaxVec).threads >= experts;
}

Status LaunchRouterFold(const float* router, const float* router_scale, const float* post_attn,
                        const bf16* o, int experts, int hidden, int q_rows, float* r_scaled,
                        bf16* c_rows, cudaStream_t stream) {
  if (experts <= 0 || hidden <= 0 || q_rows <= 0) {
    return MakeError("LaunchRouterFold: ", experts, " experts, hidden ", hidden, ", ", q_rows,
                     " attention rows");
  }
  const dim3 grid((q_rows + kFoldThreads - 1) / kFoldThreads,
                  (experts + kFoldExperts - 1) / kFoldExperts);
  RouterFoldKernel<<<grid, kFoldThreads, 0, stream>>>(router, router_scale, post_attn, o, experts,
                                                      hidden, q_rows, r_scaled, c_rows);
  GS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Ok();
}

int RouterFoldHBlocks(int experts) { return (experts + kHWarps - 1) / kHWarps; }

Status LaunchRouterFoldH(const float* h, int hidden, const float* r_scaled, int experts, float* a,
                         int* done, cudaStream_t stream) {
  if (hidden % 4 != 0 || hidden > 4 * 32 * kHRowVec || experts <= 0) {
    return MakeError("LaunchRouterFoldH: hidden ", hidden, ", ", experts, " experts (hidden a "
                     "multiple of 4, at most ", 4 * 32 * kHRowVec, ")");
  }
  return LaunchKernel("RouterFoldHKernel", RouterFoldHKernel, RouterFoldHBlocks(experts),
                      kHWarps * 32, 0, stream, h, hidden, r_scaled, experts, a, done);
}

Status LaunchPostAttentionRouted(float* h, const float* attn, int hidden, int experts,
                                 const float* router_a, int* a_done, const float* post_attn,
                                 const float* pre_ffn, const float* pre_ffn_2, float eps,
                                 bf16* x_dense, bf16* x_moe, float* logits, int top_k,
                                 const float* per_expert_scale, const int* valid_tokens,
                                 int* topk_ids, float* topk_weights, int* active_count,
                                 cudaStream_t stream) {
  // ShapeFor adds the alignment checks to RouterFoldServes' shape (a thread per expert).
  const row::Shape shape = row::ShapeFor(hidden, kRoutedRows, row::kMaxVec, h, attn);
  if (!RouterFoldServes(hidden, experts, top_k) || shape.vec == 0) {
    return MakeError("LaunchPostAttentionRouted: hidden ", hidden, " with ", experts,
                     " experts, top ", top_k, " (see RouterFoldServes)");
  }
  auto launch = [&](auto kernel) {
    return LaunchKernel("PostAttentionRoutedKernel", kernel, 1, shape.threads, 0, stream, h, attn,
                        hidden, experts, router_a, post_attn, pre_ffn, pre_ffn_2, eps, x_dense,
                        x_moe, logits, top_k, per_expert_scale, valid_tokens, topk_ids,
                        topk_weights, active_count, a_done, RouterFoldHBlocks(experts));
  };
  switch (shape.vec) {
    case 1: return launch(PostAttentionRoutedKernel<1>);
    case 2: return launch(PostAttentionRoutedKernel<2>);
    case 3: return launch(PostAttentionRoutedKernel<3>);
    default: return launch(PostAttentionRoutedKernel<4>);
  }
}

}  // namespace gs::cuda
