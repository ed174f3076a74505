#include "runtime/cpu/cpu_moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/cpu/cpu_ops.h"

namespace gs::cpu {
namespace {

// gate/up/down through one GLU: y = down(gelu_tanh(gate(x)) ⊙ up(x)).
void Glu(const QuantizedLinear& gate, const QuantizedLinear& up, const QuantizedLinear& down,
         const float* x, int tokens, float* y, ThreadPool& pool, Bf16Mode mode) {
  const size_t inter = static_cast<size_t>(gate.rows) * tokens;
  std::vector<float> g(inter), u(inter);
  Linear(gate, x, tokens, g.data(), pool);
  Linear(up, x, tokens, u.data(), pool);
  for (size_t i = 0; i < inter; ++i) g[i] = GeluTanh(g[i]) * u[i];
  RoundInPlace(g.data(), inter, mode);
  Linear(down, g.data(), tokens, y, pool);
}

}  // namespace

Routing Route(const ModelConfig& config, const LayerWeights& w, const float* h1, int tokens,
              ThreadPool& pool) {
  const std::vector<float> logits = RouterLogits(config, w, h1, tokens, pool);
  return WeighExperts(config, w, logits, TopExperts(config, logits, tokens), tokens);
}

std::vector<float> RouterLogits(const ModelConfig& config, const LayerWeights& w, const float* h1,
                                int tokens, ThreadPool& pool) {
  const int hsz = config.hidden_size;
  std::vector<float> r(h1, h1 + static_cast<size_t>(tokens) * hsz);
  RmsNorm(r.data(), tokens, hsz, {}, static_cast<float>(config.rms_norm_eps));
  const float root = 1.0f / std::sqrt(static_cast<float>(hsz));
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < hsz; ++i) r[static_cast<size_t>(t) * hsz + i] *= w.router_scale[i] * root;
  }
  std::vector<float> logits(static_cast<size_t>(tokens) * config.num_experts);
  Linear(w.router, r.data(), tokens, logits.data(), pool);
  return logits;
}

std::vector<int> TopExperts(const ModelConfig& config, const std::vector<float>& logits,
                            int tokens) {
  const int e = config.num_experts, k = config.top_k_experts;
  std::vector<int> out(static_cast<size_t>(tokens) * k), order(static_cast<size_t>(e));
  for (int t = 0; t < tokens; ++t) {
    const float* l = logits.data() + static_cast<size_t>(t) * e;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    std::copy_n(order.begin(), k, out.begin() + static_cast<ptrdiff_t>(t) * k);
  }
  return out;
}

// Softmax over all experts, top-k, renormalise: the same as a softmax over the k selected.
Routing WeighExperts(const ModelConfig& config, const LayerWeights& w,
                     const std::vector<float>& logits, std::vector<int> experts, int tokens) {
  const int e = config.num_experts, k = config.top_k_experts;
  Routing out;
  out.experts = std::move(experts);
  out.weights.resize(static_cast<size_t>(tokens) * k);
  for (int t = 0; t < tokens; ++t) {
    const float* l = logits.data() + static_cast<size_t>(t) * e;
    const int* sel = out.experts.data() + static_cast<size_t>(t) * k;
    float top = -INFINITY;
    for (int j = 0; j < k; ++j) top = std::max(top, l[sel[j]]);
    double sum = 0.0;
    for (int j = 0; j < k; ++j) sum += std::exp(static_cast<double>(l[sel[j]] - top));
    for (int j = 0; j < k; ++j) {
      const double p = std::exp(static_cast<double>(l[sel[j]] - top)) / sum;
      out.weights[static_cast<size_t>(t) * k + j] =
          static_cast<float>(p) * w.per_expert_scale[sel[j]];
    }
  }
  return out;
}

void RunExperts(const ModelConfig& config, const LayerWeights& w, const Routing& routing,
                const float* x, int tokens, float* out, ThreadPool& pool, Bf16Mode glu) {
  const int hsz = config.hidden_size, k = config.top_k_experts;
  if (HasLinearInputObserver()) {
    // Calibration: every expert sees every token, so experts the router rarely picks still get
    // activation ranges. The outputs are discarded.
    std::vector<float> scratch(static_cast<size_t>(tokens) * hsz);
    for (const ExpertWeights& ew : w.experts.experts) {
      Glu(ew.gate, ew.up, ew.down, x, tokens, scratch.data(), pool, glu);
    }
  }
  std::fill(out, out + static_cast<size_t>(tokens) * hsz, 0.0f);
  // Group tokens by expert so each expert's weights are dequantized once per step.
  std::vector<std::vector<std::pair<int, float>>> by_expert(static_cast<size_t>(config.num_experts));
  for (int t = 0; t < tokens; ++t) {
    for (int j = 0; j < k; ++j) {
      const size_t idx = static_cast<size_t>(t) * k + j;
      by_expert[static_cast<size_t>(routing.experts[idx])].push_back({t, routing.weights[idx]});
    }
  }
  std::vector<float> xs, ys;
  for (size_t e = 0; e < by_expert.size(); ++e) {
    const auto& users = by_expert[e];
    if (users.empty()) continue;
    const int n = static_cast<int>(users.size());
    xs.resize(static_cast<size_t>(n) * hsz);
    ys.resize(static_cast<size_t>(n) * hsz);
    for (int i = 0; i < n; ++i) {
      std::copy_n(x + static_cast<size_t>(users[i].first) * hsz, hsz, xs.data() + static_cast<size_t>(i) * hsz);
    }
    const ExpertWeights& ew = w.experts.experts[e];
    Glu(ew.gate, ew.up, ew.down, xs.data(), n, ys.data(), pool, glu);
    for (int i = 0; i < n; ++i) {
      float* o = out + static_cast<size_t>(users[i].first) * hsz;
      const float* y = ys.data() + static_cast<size_t>(i) * hsz;
      for (int c = 0; c < hsz; ++c) o[c] += users[i].second * y[c];
    }
  }
}

void RunDenseMlp(const LayerWeights& w, const float* x, int tokens, float* out, ThreadPool& pool,
                 Bf16Mode glu) {
  Glu(w.mlp_gate, w.mlp_up, w.mlp_down, x, tokens, out, pool, glu);
}

}  // namespace gs::cpu
