// Mixture-of-experts plumbing (reference gemma4 §3.6, nvfp4 §5.3): fp32 router with top-k,
// grouping of token slots per expert, and the deterministic combine at the end of the FFN block.
// The expert GLU and down projections themselves run in nvfp4_gemm.cu (router weights applied in
// the down projection's epilogue).
#include <cfloat>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/router_topk.cuh"
#include "runtime/cuda/row_common.cuh"

namespace gs::cuda {
namespace {

constexpr int kRouterThreads = 256;  // top-k kernel: one warp per token
// Up to this many tokens the top-k and the grouping run as one single-block kernel (decode).
constexpr int kFusedSelectTokens = 128;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
__device__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < warps; ++i) total += scratch[i];
  return total;
}

// One warp per token: top-k by logit (lowest index on ties), w_j = softmax over the k selected
// (== the renormalised full softmax) × per_expert_scale[e_j].
// Router logits of a few tokens (decode), fp32: logits[t, e] = x[t] · W[e], one 128-thread
// block per expert: thread i takes the row's float4s i, i + 128, … (5.5 per thread at hidden
// 2816, all in flight at once), warp sums by shuffles, then
// the 4 warps' sums in warp order (fixed: the result never depends on scheduling). A block per
// expert (128 blocks) instead of a warp per expert (32 blocks) keeps enough loads in flight to
// stream the 1.4 MB of fp32 weights at bandwidth. For more tokens the runner uses cuBLASLt.
constexpr int kRouterGemvMaxTokens = kRouterGemvTokens;
constexpr int kRouterGemvThreads = 128;
constexpr int kRouterRowVec = 6;  // float4s of the weight row per thread held in registers
__device__ __forceinline__ void RouterGemvKernelBody(const float* __restrict__ x, int tokens,
                                                     int hidden, const float* __restrict__ w,
                                                     int experts, float* __restrict__ logits) {
  __shared__ float part[kRouterGemvThreads / 32][kRouterGemvMaxTokens];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int e = blockIdx.x;
  // Before the PDL wait (launch.cuh), only the weights: a row of up to kRouterRowVec float4s per
  // thread (hidden ≤ 3072) is loaded into registers while the previous kernel finishes; a wider
  // one is prefetched into L2 (one 128 B line per thread and step) and streamed after the wait.
  const char* row = reinterpret_cast<const char*>(w + static_cast<int64_t>(e) * hidden);
  const float4* wr = reinterpret_cast<const float4*>(row);
  const int n4 = hidden / 4;
  const bool in_registers = n4 <= kRouterRowVec * kRouterGemvThreads;
  float4 wv[kRouterRowVec];
  if (in_registers) {
#pragma unroll
    for (int j = 0; j < kRouterRowVec; ++j) {
      const int c = threadIdx.x + j * kRouterGemvThreads;
      wv[j] = c < n4 ? __ldg(wr + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  } else {
    for (int64_t off = threadIdx.x * int64_t{128}; off < int64_t{4} * hidden;
         off += kRouterGemvThreads * 128) {
      asm volatile("prefetch.L2 [%0];\n" ::"l"(row + off));  // generic address
    }
  }
  GridDependencyWait();
  TriggerDependentsIfOneWave();
  // acc[t] sums this thread's columns c = threadIdx.x + j·128 in ascending order either way.
  float acc[kRouterGemvMaxTokens] = {};
  auto add = [&](const float4& wc, int c) {
#pragma unroll
    for (int t = 0; t < kRouterGemvMaxTokens; ++t) {
      if (t < tokens) {
        const float4 xv = reinterpret_cast<const float4*>(x + static_cast<int64_t>(t) * hidden)[c];
        acc[t] += wc.x * xv.x + wc.y * xv.y + wc.z * xv.z + wc.w * xv.w;
      }
    }
  };
  if (in_registers) {
#pragma unroll
    for (int j = 0; j < kRouterRowVec; ++j) {
      const int c = threadIdx.x + j * kRouterGemvThreads;
      if (c < n4) add(wv[j], c);
    }
  } else {
#pragma unroll 2
    for (int c = threadIdx.x; c < n4; c += kRouterGemvThreads) add(wr[c], c);
  }
#pragma unroll
  for (int t = 0; t < kRouterGemvMaxTokens; ++t) {
    if (t >= tokens) break;  // uniform: every lane has the same token count
    const float v = WarpSum(acc[t]);
    if (lane == 0) part[warp][t] = v;
  }
  __syncthreads();
  if (threadIdx.x < tokens) {
    float v = 0.0f;
#pragma unroll
    for (int i = 0; i < kRouterGemvThreads / 32; ++i) v += part[i][threadIdx.x];
    logits[static_cast<int64_t>(threadIdx.x) * experts + e] = v;
  }
}

__global__ void __launch_bounds__(128)
    RouterGemvKernel(const float* __restrict__ x, int tokens, int hidden,
                     const float* __restrict__ w, int experts, float* __restrict__ logits) {
  RouterGemvKernelBody(x, tokens, hidden, w, experts, logits);
}

// Token t's top-k (router_topk.cuh) by one warp, stored as ids and weights [t][top_k].
__device__ void TopkOneToken(const float* __restrict__ logits, int t, int experts, int top_k,
                             const float* __restrict__ per_expert_scale,
                             int* __restrict__ topk_ids, float* __restrict__ topk_weights) {
  const TopkPick pick = WarpTopK(logits + static_cast<int64_t>(t) * experts, experts, top_k,
                                 per_expert_scale);
  const int lane = threadIdx.x % 32;
  if (lane < top_k) {
    topk_ids[static_cast<int64_t>(t) * top_k + lane] = pick.id;
    topk_weights[static_cast<int64_t>(t) * top_k + lane] = pick.weight;
  }
}

__global__ void __launch_bounds__(kRouterThreads)
    RouterTopkKernel(const float* __restrict__ logits, int tokens, int experts, int top_k,
                     const float* __restrict__ per_expert_scale, int* __restrict__ topk_ids,
                     float* __restrict__ topk_weights) {
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const int warp = threadIdx.x / 32;
  const int t = blockIdx.x * (kRouterThreads / 32) + warp;
  if (t >= tokens) return;
  TopkOneToken(logits, t, experts, top_k, per_expert_scale, topk_ids, topk_weights);
}

// Counting sort of slots (token·k + j) by expert, in one block: count, scan, place. The order of
// slots inside an expert does not matter (each slot's result lands in its own output row).
// `cnt` is 2 × experts ints of shared memory (counts, then cursors).
__device__ void GroupSlots(const int* __restrict__ topk_ids, int slots, int top_k,
                           const int* __restrict__ valid_tokens, int experts, int* offsets,
                           int* entries, int* active, int* active_count, int* cnt) {
  int* cursor = cnt + experts;
  if (valid_tokens != nullptr) slots = min(slots, *valid_tokens * top_k);
  for (int e = threadIdx.x; e < experts; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += blockDim.x) atomicAdd(&cnt[topk_ids[s]], 1);
  __syncthreads();
  if (threadIdx.x < 32) {  // warp 0: exclusive scan of the counts, 32 experts at a time
    const int lane = threadIdx.x;
    int run = 0, n_active = 0;
    for (int base = 0; base < experts; base += 32) {
      const int e = base + lane;
      const int c = e < experts ? cnt[e] : 0;
      int incl = c;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const unsigned used = __ballot_sync(0xffffffffu, c > 0);
      if (e < experts) {
        offsets[e] = run + incl - c;
        cursor[e] = run + incl - c;
        if (c > 0) active[n_active + __popc(used & ((1u << lane) - 1u))] = e;
      }
      run += __shfl_sync(0xffffffffu, incl, 31);
      n_active += __popc(used);
    }
    if (lane == 0) {
      offsets[experts] = run;
      *active_count = n_active;
    }
  }
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += blockDim.x) {
    entries[atomicAdd(&cursor[topk_ids[s]], 1)] = s;
  }
}

__global__ void __launch_bounds__(1024)
    MoeGroupKernel(const int* __restrict__ topk_ids, int slots, int top_k,
                   const int* __restrict__ valid_tokens, int experts, int* offsets, int* entries,
                   int* active, int* active_count) {
  extern __shared__ int cnt[];
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependents();   // one block
  GroupSlots(topk_ids, slots, top_k, valid_tokens, experts, offsets, entries, active,
             active_count, cnt);
}

// Top-k of every token (warp w of the block takes tokens w, w + warps, …), then the grouping, by
// one block. `smem` holds 2·experts ints; __syncthreads() makes the block's global writes of the
// top-k ids visible to the grouping threads.
__device__ void SelectAndGroup(const float* __restrict__ logits, int tokens, int experts,
                               int top_k, const float* __restrict__ per_expert_scale,
                               const int* valid_tokens, int* topk_ids,
                               float* __restrict__ topk_weights, int* offsets, int* entries,
                               int* active, int* active_count, int* smem) {
  const int warp = threadIdx.x / 32;
  for (int t = warp; t < tokens; t += blockDim.x / 32) {
    TopkOneToken(logits, t, experts, top_k, per_expert_scale, topk_ids, topk_weights);
  }
  __syncthreads();
  GroupSlots(topk_ids, tokens * top_k, top_k, valid_tokens, experts, offsets, entries, active,
             active_count, smem);
}

// Up to kFusedSelectTokens tokens (logits from the GEMV or cuBLASLt): SelectAndGroup in one
// 1024-thread block.
__global__ void __launch_bounds__(1024)
    RouterSelectKernel(const float* __restrict__ logits, int tokens, int experts, int top_k,
                       const float* __restrict__ per_expert_scale, const int* valid_tokens,
                       int* topk_ids, float* __restrict__ topk_weights, int* offsets,
                       int* entries, int* active, int* active_count) {
  extern __shared__ int sel_smem[];  // 2·experts ints
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependents();   // one block
  SelectAndGroup(logits, tokens, experts, top_k, per_expert_scale, valid_tokens, topk_ids,
                 topk_weights, offsets, entries, active, active_count, sel_smem);
}

// Decode router in one launch: RouterGemvKernel's blocks, then the last block to finish runs
// RouterSelectKernel's top-k and grouping (with its 4 warps). Each block publishes its logits
// with __threadfence() before counting itself in `*done`; the block that counts last sees all of
// them (read through L2) and resets the counter for the next launch or graph replay.
__global__ void __launch_bounds__(128)
    RouterDecodeKernel(const float* __restrict__ x, int tokens, int hidden,
                       const float* __restrict__ w, int experts, float* logits, int top_k,
                       const float* __restrict__ per_expert_scale, const int* valid_tokens,
                       int* topk_ids, float* __restrict__ topk_weights, int* offsets, int* entries,
                       int* active, int* active_count, int* done) {
  extern __shared__ int dec_smem[];  // 2·experts ints
  __shared__ bool last;
  RouterGemvKernelBody(x, tokens, hidden, w, experts, logits);
  __threadfence();  // this thread's logits are visible device-wide before the block counts
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(done, 1) == static_cast<int>(gridDim.x) - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // acquire side: the other blocks' logits, counted before us, are visible
  SelectAndGroup(logits, tokens, experts, top_k, per_expert_scale, valid_tokens, topk_ids,
                 topk_weights, offsets, entries, active, active_count, dec_smem);
  if (threadIdx.x == 0) *done = 0;  // every block has counted: ready for the next launch
}

// The most top-k slots the register-resident combine sums (Gemma 4: 8); more take the generic one.
constexpr int kCombineMaxTopK = 8;
// Float4 rows a register-resident combine thread holds per vec: dense, h, post, next_norm, and
// with MoE also post1, post2 and the kCombineMaxTopK slot rows.
constexpr int CombineRows(bool moe) { return moe ? 6 + kCombineMaxTopK : 4; }

// One block per token, register-resident (row_common.cuh): the weight rows are loaded before the
// PDL wait, then dense, h and the top_k slot rows in one batch of independent loads; three block
// reductions (rms of dense and moe together, rms(f), rms(h)) and the stores, all from registers.
template <int kVec, bool kMoe>
__global__ void __launch_bounds__(row::MaxThreads(CombineRows(kMoe), kVec))
    FfnCombineKernel(float* __restrict__ h, const float* __restrict__ dense,
                     const float* __restrict__ slot_out, int top_k, int hidden,
                     const float* __restrict__ post1, const float* __restrict__ post2,
                     const float* __restrict__ post, float layer_scalar, float eps,
                     const float* __restrict__ next_norm, bf16* __restrict__ x_next) {
  __shared__ float2 scratch_dm[32];
  __shared__ float scratch_f[32], scratch_h[32];
  const int n4 = hidden / 4;
  float4 wp[kVec], wn[kVec], w1[kVec], w2[kVec];
  row::LoadConst<kVec>(post, n4, wp);
  if (x_next != nullptr) {
    row::LoadConst<kVec>(next_norm, n4, wn);
  } else {
    row::Fill<kVec>(wn, 0.0f);  // unused
  }
  if constexpr (kMoe) {
    row::LoadConst<kVec>(post1, n4, w1);
    row::LoadConst<kVec>(post2, n4, w2);
  }
  GridDependencyWait();  // PDL (launch.cuh): dense, slot_out and h are activations
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  float* hr = h + t * hidden;
  float4 f[kVec], hv[kVec];
  row::Load<kVec>(dense + t * hidden, n4, f);
  row::Load<kVec>(hr, n4, hv);
  if constexpr (kMoe) {
    float4 s[kCombineMaxTopK][kVec];
#pragma unroll
    for (int j = 0; j < kCombineMaxTopK; ++j) {
      if (j < top_k) {
        row::Load<kVec>(slot_out + (t * top_k + j) * hidden, n4, s[j]);
      } else {
        row::Fill<kVec>(s[j], 0.0f);
      }
    }
    // moe = Σ_j slot_j in slot order (fixed: deterministic), from 0 as the generic form.
    float4 m[kVec];
    row::Fill<kVec>(m, 0.0f);
#pragma unroll
    for (int j = 0; j < kCombineMaxTopK; ++j) {
      if (j >= top_k) break;
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        m[v].x += s[j][v].x;
        m[v].y += s[j][v].y;
        m[v].z += s[j][v].z;
        m[v].w += s[j][v].w;
      }
    }
    const float2 ss = row::BlockSum2(
        make_float2(row::SumSquares<kVec>(f), row::SumSquares<kVec>(m)), scratch_dm);
    const float inv_d = rsqrtf(ss.x / hidden + eps), inv_m = rsqrtf(ss.y / hidden + eps);
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      f[v].x = f[v].x * inv_d * w1[v].x + m[v].x * inv_m * w2[v].x;
      f[v].y = f[v].y * inv_d * w1[v].y + m[v].y * inv_m * w2[v].y;
      f[v].z = f[v].z * inv_d * w1[v].z + m[v].z * inv_m * w2[v].z;
      f[v].w = f[v].w * inv_d * w1[v].w + m[v].w * inv_m * w2[v].w;
    }
  }
  const float inv = rsqrtf(row::BlockSum(row::SumSquares<kVec>(f), scratch_f) / hidden + eps);
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    hv[v].x = (hv[v].x + f[v].x * inv * wp[v].x) * layer_scalar;
    hv[v].y = (hv[v].y + f[v].y * inv * wp[v].y) * layer_scalar;
    hv[v].z = (hv[v].z + f[v].z * inv * wp[v].z) * layer_scalar;
    hv[v].w = (hv[v].w + f[v].w * inv * wp[v].w) * layer_scalar;
    if (row::Owns(v, n4)) row::Store(hr, v, hv[v]);
  }
  if (x_next == nullptr) return;
  const float inv_next =
      rsqrtf(row::BlockSum(row::SumSquares<kVec>(hv), scratch_h) / hidden + eps);
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    if (!row::Owns(v, n4)) continue;
    row::StoreBf16(x_next + t * hidden, v,
                   make_float4(hv[v].x * inv_next * wn[v].x, hv[v].y * inv_next * wn[v].y,
                               hv[v].z * inv_next * wn[v].z, hv[v].w * inv_next * wn[v].w));
  }
}

// FfnCombineKernel for any width and top_k: loops over global memory, recomputing the MoE sum
// and f in each pass instead of staging them.
__global__ void FfnCombineGenericKernel(float* __restrict__ h, const float* __restrict__ dense,
                                        const float* __restrict__ slot_out, int top_k, int hidden,
                                        const float* __restrict__ post1,
                                        const float* __restrict__ post2,
                                        const float* __restrict__ post, float layer_scalar,
                                        float eps, const float* __restrict__ next_norm,
                                        bf16* __restrict__ x_next) {
  __shared__ float scratch[32];
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const int64_t t = blockIdx.x;
  const float* d = dense + t * hidden;
  auto moe = [&](int c) {
    float s = 0.0f;
    for (int j = 0; j < top_k; ++j) s += slot_out[(t * top_k + j) * hidden + c];
    return s;
  };
  float inv_d = 0.0f, inv_m = 0.0f;
  if (slot_out != nullptr) {
    float ssd = 0.0f, ssm = 0.0f;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
      const float m = moe(c);
      ssd += d[c] * d[c];
      ssm += m * m;
    }
    inv_d = rsqrtf(BlockSum(ssd, scratch) / hidden + eps);
    inv_m = rsqrtf(BlockSum(ssm, scratch) / hidden + eps);
  }
  auto f = [&](int c) {
    return slot_out == nullptr ? d[c] : d[c] * inv_d * post1[c] + moe(c) * inv_m * post2[c];
  };
  float ss = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = f(c);
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / hidden + eps);
  float* hr = h + t * hidden;
  float ss_next = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = (hr[c] + f(c) * inv * post[c]) * layer_scalar;
    hr[c] = v;  // each thread rereads only its own columns below
    ss_next += v * v;
  }
  if (x_next == nullptr) return;
  const float inv_next = rsqrtf(BlockSum(ss_next, scratch) / hidden + eps);
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    x_next[t * hidden + c] = __float2bfloat16_rn(hr[c] * inv_next * next_norm[c]);
  }
}

Status CheckTopk(const char* who, int experts, int top_k) {
  if (experts <= 0 || experts > kTopkMaxExperts) {
    return MakeError(who, ": ", experts, " experts (1 to ", kTopkMaxExperts, " supported)");
  }
  if (top_k > experts || top_k <= 0 || top_k > kTopkMaxK) {
    return MakeError(who, ": unsupported top_k ", top_k, " of ", experts, " experts");
  }
  return Ok();
}

}  // namespace

Status LaunchRouterLogits(const float* x, int tokens, int hidden, const float* w, int experts,
                          float* logits, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (tokens > kRouterGemvMaxTokens || hidden % 4 != 0) {
    return MakeError("LaunchRouterLogits: ", tokens, " tokens / hidden ", hidden,
                     " (at most ", kRouterGemvMaxTokens, " tokens, hidden a multiple of 4)");
  }
  return LaunchKernel("RouterGemvKernel", RouterGemvKernel, experts, kRouterGemvThreads, 0, stream, x,
                      tokens, hidden, w, experts, logits);
}

Status LaunchRouterDecode(const float* x, int tokens, int hidden, const float* w, int experts,
                         int top_k, const float* per_expert_scale, const int* valid_tokens,
                         float* logits, int* topk_ids, float* topk_weights, int* offsets,
                         int* entries, int* active, int* active_count, int* done,
                         cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (tokens > kRouterGemvMaxTokens || hidden % 4 != 0) {
    return MakeError("LaunchRouterDecode: ", tokens, " tokens / hidden ", hidden,
                     " (at most ", kRouterGemvMaxTokens, " tokens, hidden a multiple of 4)");
  }
  GS_RETURN_IF_ERROR(CheckTopk("LaunchRouterDecode", experts, top_k));
  const size_t smem = sizeof(int) * 2 * experts;
  return LaunchKernel("RouterDecodeKernel", RouterDecodeKernel, experts, kRouterGemvThreads, smem,
                      stream, x, tokens, hidden, w, experts, logits, top_k, per_expert_scale,
                      valid_tokens, topk_ids, topk_weights, offsets, entries, active,
                      active_count, done);
}

Status LaunchRouterSelect(const float* logits, int tokens, int experts, int top_k,
                          const float* per_expert_scale, const int* valid_tokens, int* topk_ids,
                          float* topk_weights, int* offsets, int* entries, int* active,
                          int* active_count, cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  GS_RETURN_IF_ERROR(CheckTopk("LaunchRouterSelect", experts, top_k));
  if (tokens <= kFusedSelectTokens) {
    const size_t smem = sizeof(int) * 2 * experts;
    return LaunchKernel("RouterSelectKernel", RouterSelectKernel, 1, 1024, smem, stream, logits,
                        tokens, experts, top_k, per_expert_scale, valid_tokens, topk_ids,
                        topk_weights, offsets, entries, active, active_count);
  }
  const int warps = kRouterThreads / 32;
  GS_RETURN_IF_ERROR(LaunchKernel("RouterTopkKernel", RouterTopkKernel,
                                  (tokens + warps - 1) / warps, kRouterThreads, 0, stream,
                                  logits, tokens, experts,
                                  top_k, per_expert_scale, topk_ids, topk_weights));
  return LaunchMoeGroup(topk_ids, tokens * top_k, top_k, valid_tokens, experts, offsets, entries,
                        active, active_count, stream);
}

Status LaunchMoeGroup(const int* topk_ids, int slots, int top_k, const int* valid_tokens,
                      int experts, int* offsets, int* entries, int* active, int* active_count,
                      cudaStream_t stream) {
  return LaunchKernel("MoeGroupKernel", MoeGroupKernel, 1, 1024, sizeof(int) * 2 * experts, stream,
                      topk_ids, slots, top_k, valid_tokens, experts, offsets, entries, active,
                      active_count);
}

Status LaunchFfnCombine(float* h, const float* dense, const float* slot_out, int top_k, int tokens,
                        int hidden, const float* post1, const float* post2, const float* post,
                        float layer_scalar, float eps, const float* next_norm, bf16* x_next,
                        cudaStream_t stream) {
  if (tokens <= 0) return Ok();
  if (hidden <= 0) return MakeError("LaunchFfnCombine: hidden ", hidden, " must be > 0");
  if (x_next != nullptr && next_norm == nullptr) {
    return MakeError("LaunchFfnCombine: x_next needs next_norm");
  }
  const bool moe = slot_out != nullptr;
  if (moe && (top_k <= 0 || post1 == nullptr || post2 == nullptr)) {
    return MakeError("LaunchFfnCombine: MoE combine with top_k ", top_k, " needs post1 and post2");
  }
  // MoE: at most 2 float4s per thread (3 × 14 rows no longer stay in registers).
  const row::Shape shape =
      row::ShapeFor(hidden, CombineRows(moe), moe ? 2 : row::kMaxVec, h, dense, slot_out, post1,
                    post2, post, next_norm, x_next);
  auto launch = [&](auto kernel) {
    return LaunchKernel("FfnCombineKernel", kernel, tokens, shape.threads, 0, stream, h, dense,
                        slot_out, top_k, hidden, post1, post2, post, layer_scalar, eps, next_norm,
                        x_next);
  };
  if (moe && top_k <= kCombineMaxTopK) {
    switch (shape.vec) {
      case 1: return launch(FfnCombineKernel<1, true>);
      case 2: return launch(FfnCombineKernel<2, true>);
      default: break;
    }
  } else if (!moe) {
    switch (shape.vec) {
      case 1: return launch(FfnCombineKernel<1, false>);
      case 2: return launch(FfnCombineKernel<2, false>);
      case 3: return launch(FfnCombineKernel<3, false>);
      case 4: return launch(FfnCombineKernel<4, false>);
      default: break;
    }
  }
  return LaunchKernel("FfnCombineGenericKernel", FfnCombineGenericKernel, tokens,
                      RowThreads(tokens), 0, stream, h, dense, slot_out, top_k, hidden, post1,
                      post2, post, layer_scalar, eps, next_norm, x_next);
}

}  // namespace gs::cuda
