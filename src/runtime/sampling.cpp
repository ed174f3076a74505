#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace gs {
namespace {

bool Finite(double v) { return std::isfinite(v); }

// Descending by logit, lower id first on ties, so results never depend on the sort's stability.
struct ByLogitDesc {
  std::span<const float> logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

}  // namespace

SamplingParams SamplingDefaults(const ModelConfig::GenerationDefaults& g) {
  SamplingParams p;
  if (!g.do_sample) return p;  // greedy
  p.temperature = g.temperature;
  p.top_k = g.top_k;
  p.top_p = g.top_p;
  p.min_p = g.min_p;
  return p;
}

Status ValidateSamplingParams(const SamplingParams& p, int vocab_size) {
  if (!Finite(p.temperature) || p.temperature < 0) {
    return MakeError("temperature ", p.temperature, " must be >= 0 (0 = greedy)");
  }
  if (p.top_k < 0) return MakeError("top_k ", p.top_k, " must be >= 0 (0 = off)");
  if (!Finite(p.top_p) || p.top_p <= 0 || p.top_p > 1) {
    return MakeError("top_p ", p.top_p, " is outside (0, 1]");
  }
  if (!Finite(p.min_p) || p.min_p < 0 || p.min_p > 1) {
    return MakeError("min_p ", p.min_p, " is outside [0, 1]");
  }
  if (!Finite(p.repetition_penalty) || p.repetition_penalty <= 0) {
    return MakeError("repetition_penalty ", p.repetition_penalty, " must be > 0 (1 = off)");
  }
  if (!Finite(p.presence_penalty) || std::fabs(p.presence_penalty) > 2) {
    return MakeError("presence_penalty ", p.presence_penalty, " is outside [-2, 2]");
  }
  if (!Finite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 2) {
    return MakeError("frequency_penalty ", p.frequency_penalty, " is outside [-2, 2]");
  }
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return MakeError("logit_bias token ", token, " is outside the vocabulary [0, ", vocab_size, ")");
    }
    if (!std::isfinite(bias) || std::fabs(bias) > 100) {
      return MakeError("logit_bias value ", bias, " for token ", token, " is outside [-100, 100]");
    }
  }
  return Ok();
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {
  if (params_.repetition_penalty != 1.0) prompt_tokens_.insert(prompt.begin(), prompt.end());
}

int32_t Sampler::Sample(std::span<const float> logits) {
  std::vector<float> row(logits.begin(), logits.end());
  return SampleInPlace(row);
}

int32_t Sampler::SampleInPlace(std::span<float> logits) {
  ApplyBiasAndPenalties(logits);
  const int32_t token = (params_.temperature <= 0.0 || params_.top_k == 1)
                            ? Argmax(logits)
                            : SampleTruncated(logits);
  ++output_counts_[token];
  return token;
}

// vLLM's order: logit bias, then the repetition penalty over prompt ∪ output, then frequency and
// presence over the output.
void Sampler::ApplyBiasAndPenalties(std::span<float> logits) const {
  for (const auto& [token, bias] : params_.logit_bias) logits[token] += bias;
  const float rep = static_cast<float>(params_.repetition_penalty);
  auto repeat = [&](int32_t t) {
    float& l = logits[t];
    l = l > 0 ? l / rep : l * rep;
  };
  if (rep != 1.0f) {
    for (int32_t t : prompt_tokens_) repeat(t);
    for (const auto& [t, count] : output_counts_) {
      if (!prompt_tokens_.contains(t)) repeat(t);
    }
  }
  if (params_.frequency_penalty != 0.0 || params_.presence_penalty != 0.0) {
    for (const auto& [t, count] : output_counts_) {
      logits[t] -= static_cast<float>(params_.frequency_penalty * count + params_.presence_penalty);
    }
  }
}

double Sampler::Uniform01() {
  // 53 random bits: the same stream on every standard library, unlike uniform_real_distribution.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

// Temperature, then top-k, top-p (nucleus over the sorted probabilities, always keeping the
// first), min-p relative to the top probability; sample from what is left.
int32_t Sampler::SampleTruncated(std::span<const float> logits) {
  const size_t n = logits.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = n;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                      ByLogitDesc{logits});
    order.resize(keep);
  } else if (params_.top_p < 1.0 || params_.min_p > 0.0) {
    std::sort(order.begin(), order.end(), ByLogitDesc{logits});
  } else {
    // Plain temperature sampling needs no order; put the maximum first for the softmax shift.
    std::swap(order[0], order[static_cast<size_t>(Argmax(logits))]);
  }
  const double inv_t = 1.0 / params_.temperature;
  const double top = logits[order[0]] * inv_t;
  std::vector<double> probs(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(logits[order[i]] * inv_t - top);
  for (double& p : probs) p /= sum;
  size_t cut = keep;
  if (params_.top_p < 1.0) {
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs[i];
      if (cum >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0) {
    const double floor_p = params_.min_p * probs[0];
    size_t i = 1;
    while (i < cut && probs[i] >= floor_p) ++i;
    cut = i;
  }
  const double total =
      std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(cut), 0.0);
  double r = Uniform01() * total;
  for (size_t i = 0; i < cut; ++i) {
    if (r < probs[i]) return order[i];
    r -= probs[i];
  }
  return order[cut - 1];
}

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Logprobs ComputeLogprobs(std::span<const float> logits, int32_t chosen, int top_n) {
  const float max_logit = logits[Argmax(logits)];
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = max_logit + std::log(sum);
  Logprobs out;
  out.chosen = static_cast<float>(logits[chosen] - log_z);
  const size_t k = std::min(static_cast<size_t>(std::max(top_n, 0)), logits.size());
  if (k == 0) return out;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    ByLogitDesc{logits});
  for (size_t i = 0; i < k; ++i) {
    out.top.push_back({order[i], static_cast<float>(logits[order[i]] - log_z)});
  }
  return out;
}

}  // namespace gs
