// Token selection from a row of logits: greedy, or temperature / top-k / top-p / min-p sampling
// with a seeded generator (the same seed gives the same tokens).
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace gs {

struct SamplingParams {
  double temperature = 0.0;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  int32_t Sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties).
int32_t Argmax(std::span<const float> logits);

}  // namespace gs
