// The Gemma 4 MoE block on the CPU: router (fp32) and the routed experts.
#pragma once

#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/bf16_rounding.h"
#include "util/thread_pool.h"

namespace gs::cpu {

struct Routing {
  std::vector<int> experts;     // [tokens, top_k]
  std::vector<float> weights;   // [tokens, top_k], renormalised and × per_expert_scale
};

// Router input is the un-normed residual h1: r = rmsnorm_noscale(h1) ⊙ scale · H^-½,
// logits = r · Wᵀ, p = softmax(logits), top-k of p, w = p_sel / Σ p_sel · per_expert_scale.
Routing Route(const ModelConfig& config, const LayerWeights& w, const float* h1, int tokens,
              ThreadPool& pool);

// Route in its three steps (diagnostics may change the selection between them):
// logits [tokens, experts] of h1;
std::vector<float> RouterLogits(const ModelConfig& config, const LayerWeights& w, const float* h1,
                                int tokens, ThreadPool& pool);
// the top-k experts of each token [tokens, k], by logit, ties to the lower id;
std::vector<int> TopExperts(const ModelConfig& config, const std::vector<float>& logits,
                            int tokens);
// the weights of the given selection: softmax of its logits × per_expert_scale.
Routing WeighExperts(const ModelConfig& config, const LayerWeights& w,
                     const std::vector<float>& logits, std::vector<int> experts, int tokens);

// out[t] = Σ_j w_tj · down_e(gelu_tanh(gate_e(x_t)) ⊙ up_e(x_t)), e = experts[t, j].
// x is the pre_feedforward_layernorm_2 output. `glu` rounds gelu(gate)·up before down_proj
// (CpuRunnerOptions::bf16_round_points; kNone is the fp32 reference).
void RunExperts(const ModelConfig& config, const LayerWeights& w, const Routing& routing,
                const float* x, int tokens, float* out, ThreadPool& pool,
                Bf16Mode glu = Bf16Mode::kNone);

// The dense MLP: down(gelu_tanh(gate(x)) ⊙ up(x)).
void RunDenseMlp(const LayerWeights& w, const float* x, int tokens, float* out, ThreadPool& pool,
                 Bf16Mode glu = Bf16Mode::kNone);

}  // namespace gs::cpu
