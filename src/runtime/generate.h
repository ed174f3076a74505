// One prompt through a ModelRunner: chunked prefill, then token-by-token decode with sampling.
// Used by `gemmaserve generate`, `bench` and the golden tests (the server's engine schedules
// many sequences itself).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model_runner.h"
#include "runtime/sampling.h"
#include "util/status.h"

namespace gs {

// An image already in the prompt: prompt[first_token, first_token + num_tokens) are its
// <|image|> tokens and `embeddings` ([num_tokens, hidden], from ModelRunner::EncodeImage) replace
// them. A prefill chunk boundary never falls inside it (the chunk grows to the image's end).
struct PromptImage {
  int first_token = 0;
  int num_tokens = 0;
  std::vector<float> embeddings;
};

struct GenerateOptions {
  int max_tokens = 16;      // 0 = only score the prompt
  int prefill_chunk = 0;    // prompt tokens per forward step; 0 = the whole prompt at once
  bool prompt_logits = false;  // keep the logits of every prompt position
  bool ignore_eos = false;
  SamplingParams sampling;
  std::vector<int> stop_ids;  // generation ends after emitting one of these
  std::vector<PromptImage> images;  // in prompt order, not overlapping
};

struct GenerateResult {
  std::vector<int32_t> tokens;        // generated ids
  std::vector<float> prompt_logits;   // [prompt, vocab] when asked for
  double prefill_seconds = 0, decode_seconds = 0;
};

// Uses KV slot 0 and global blocks 0, 1, 2, ... of the runner's pool.
Expected<GenerateResult> Generate(ModelRunner& runner, const std::vector<int32_t>& prompt,
                                  const GenerateOptions& options);

// KV capacity Generate needs for a prompt of `prompt_len` plus `max_tokens`.
KvCacheSpec KvSpecForSingleSequence(int total_tokens, int block_size = 16);

}  // namespace gs
