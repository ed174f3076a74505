// The router's top-k selection of one token, by one warp, in registers (moe.cu's
// RouterSelectKernel, RouterDecodeKernel and RouterTopkKernel: no shared-memory copy of the
// logits, no barrier between the rounds).
//
// Selection (cpu::Route's order): k rounds, each taking the largest remaining logit, ties to the
// lower expert id; a taken expert's logit becomes -inf. With NaN logits a round may find nothing
// (no comparison is true) and takes expert j instead, so ids stay in range. The weights are the
// softmax over the selected logits, relative to the largest, times the expert's scale:
//   p_j = exp(l_j − l_0),   w_j = p_j / Σ_{i<k} p_i · per_expert_scale[id_j]
// summed in selection order (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cmath>

namespace gs::cuda {

constexpr int kTopkMaxExperts = 256;  // 8 logits a lane
constexpr int kTopkMaxK = 32;         // one pick a lane

// Lane j < top_k of the result holds pick j.
struct TopkPick {
  int id;
  float weight;
};

constexpr int kTopkPerLane = kTopkMaxExperts / 32;

// All 32 lanes of the warp call it with the same arguments; lane l holds the logits of experts
// l, l + 32, … in v (-inf past `experts`). v is consumed.
__device__ __forceinline__ TopkPick WarpTopKOf(float (&v)[kTopkPerLane], int experts, int top_k,
                                               const float* __restrict__ per_expert_scale) {
  constexpr int kPerLane = kTopkPerLane;
  const int lane = threadIdx.x % 32;
  TopkPick mine{0, 0.0f};
  float top = 0.0f, sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    float best = -INFINITY;
    int best_e = INT_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < experts && (v[i] > best || (v[i] == best && e < best_e))) {
        best = v[i];
        best_e = e;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (ov > best || (ov == best && oe < best_e)) {
        best = ov;
        best_e = oe;
      }
    }
    if (best_e >= experts) best_e = j;  // only with NaN logits: keep the ids in range
    if (j == 0) top = best;
    const float p = expf(best - top);
    sum += p;
    if (lane == j) mine = TopkPick{best_e, p};
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + 32 * i == best_e) v[i] = -INFINITY;  // taken
    }
  }
  if (lane < top_k) mine.weight = mine.weight / sum * per_expert_scale[mine.id];
  return mine;
}

// WarpTopKOf on the token's row of `experts` logits in global memory, read through L2 (__ldcg):
// in the fused decode router other blocks of the same grid wrote it.
__device__ __forceinline__ TopkPick WarpTopK(const float* __restrict__ logits, int experts,
                                             int top_k, const float* __restrict__ per_expert_scale) {
  const int lane = threadIdx.x % 32;
  float v[kTopkPerLane];
#pragma unroll
  for (int i = 0; i < kTopkPerLane; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < experts ? __ldcg(logits + e) : -INFINITY;
  }
  return WarpTopKOf(v, experts, top_k, per_expert_scale);
}

}  // namespace gs::cuda
