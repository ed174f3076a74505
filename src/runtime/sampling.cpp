#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace gs {

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Order as in vLLM/HF: temperature, then top-k, top-p (nucleus over the sorted probabilities,
// always keeping the first), min-p relative to the top probability; sample from what is left.
int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature <= 0.0 || params_.top_k == 1) return Argmax(logits);
  const size_t n = logits.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = n;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) keep = params_.top_k;
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  order.resize(keep);
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
  const double total = std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(cut), 0.0);
  std::uniform_real_distribution<double> uniform(0.0, total);
  double r = uniform(rng_);
  for (size_t i = 0; i < cut; ++i) {
    r -= probs[i];
    if (r <= 0) return order[i];
  }
  return order[cut - 1];
}

}  // namespace gs
