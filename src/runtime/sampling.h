// Token selection from a row of logits, per sequence: logit bias, repetition / presence /
// frequency penalties, then greedy or temperature / top-k / top-p / min-p sampling with the
// sequence's own seeded generator (the same seed gives the same tokens, whatever else runs in the
// batch). Also log-probabilities of the raw logits for `logprobs` / `top_logprobs`.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "model/config.h"
#include "util/status.h"

namespace gs {

struct SamplingParams {
  double temperature = 0.0;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  // Penalties with vLLM's meaning. repetition: logits of tokens seen in the prompt or the output
  // are divided by it when positive, multiplied when negative (1 = off). presence: subtracted
  // once from every token already in the output. frequency: subtracted per occurrence.
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, added to its logit)
  std::optional<uint64_t> seed;  // unset = a random seed per sampler
};

// The defaults of a request: generation_config.json's values when it asks to sample, greedy when
// it sets do_sample false (as transformers' generate does).
SamplingParams SamplingDefaults(const ModelConfig::GenerationDefaults& generation);

// Errors name the offending parameter, e.g. "top_p 1.5 is outside (0, 1]".
Status ValidateSamplingParams(const SamplingParams& params, int vocab_size);

class Sampler {
 public:
  // `prompt` feeds the repetition penalty (the only penalty that looks at the prompt).
  explicit Sampler(const SamplingParams& params, std::span<const int32_t> prompt = {});

  // Applies bias and penalties to `logits` in place, picks a token and records it as output.
  int32_t SampleInPlace(std::span<float> logits);
  // The same on a copy.
  int32_t Sample(std::span<const float> logits);

  const SamplingParams& params() const { return params_; }

 private:
  void ApplyBiasAndPenalties(std::span<float> logits) const;
  int32_t SampleTruncated(std::span<const float> logits);
  double Uniform01();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> prompt_tokens_;           // only with a repetition penalty
  std::unordered_map<int32_t, int> output_counts_;       // token -> occurrences in the output
};

// Index of the largest logit (lowest index on ties).
int32_t Argmax(std::span<const float> logits);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct Logprobs {
  float chosen = 0.0f;              // log_softmax(logits)[chosen]
  std::vector<TokenLogprob> top;    // the top_n most likely, descending (ties: lower id first)
};

// Log-probabilities from one raw row of logits (before bias, penalties and temperature).
Logprobs ComputeLogprobs(std::span<const float> logits, int32_t chosen, int top_n);

}  // namespace gs
