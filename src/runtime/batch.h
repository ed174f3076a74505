// What the engine hands a ModelRunner for one forward step: the new tokens of one or more
// sequences (a prefill chunk or one decode token each), grouped by sequence, in position order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/status.h"

namespace gs {

struct BatchSequence {
  int slot = 0;              // KV slot of this sequence (sliding-window rings are per slot)
  int first_token = 0;       // index of its first token in Batch::token_ids
  int num_tokens = 0;        // new tokens this step
  int start_position = 0;    // position of its first new token == tokens already in the KV cache
  // Global-layer KV blocks covering positions [0, start_position + num_tokens), in order.
  std::vector<int32_t> block_table;
};

// One image's soft tokens in this step (issue 7): its rows replace the token embeddings of
// token_ids[first_token, first_token + num_tokens) — after the text embedding scale, unscaled —
// and on sliding-window layers these tokens see each other bidirectionally (HF rule:
// allowed(q, k) = (k <= q or same image) and k > q - window); full layers stay causal. A span
// lies inside one sequence's tokens of this step: an image is never split across prefill chunks.
struct BatchImageSpan {
  int first_token = 0;                // index into Batch::token_ids
  int num_tokens = 0;
  std::span<const float> embeddings;  // [num_tokens, hidden]; the caller keeps it alive
};

struct Batch {
  std::vector<int32_t> token_ids;
  std::vector<BatchSequence> sequences;
  std::vector<BatchImageSpan> image_spans;  // empty for text-only steps
  // Indices into token_ids whose logits the step must return, in this order.
  std::vector<int32_t> logits_indices;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
};

// The runners' shared rule for image spans: each inside one sequence's tokens of this step, in
// order, not overlapping, with num_tokens × hidden embedding values.
Status CheckImageSpans(const Batch& batch, int hidden);

}  // namespace gs
