// What the engine hands a ModelRunner for one forward step: the new tokens of one or more
// sequences (a prefill chunk or one decode token each), grouped by sequence, in position order.
#pragma once

#include <cstdint>
#include <vector>

namespace gs {

struct BatchSequence {
  int slot = 0;              // KV slot of this sequence (sliding-window rings are per slot)
  int first_token = 0;       // index of its first token in Batch::token_ids
  int num_tokens = 0;        // new tokens this step
  int start_position = 0;    // position of its first new token == tokens already in the KV cache
  // Global-layer KV blocks covering positions [0, start_position + num_tokens), in order.
  std::vector<int32_t> block_table;
};

struct Batch {
  std::vector<int32_t> token_ids;
  std::vector<BatchSequence> sequences;
  // Indices into token_ids whose logits the step must return, in this order.
  std::vector<int32_t> logits_indices;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
};

}  // namespace gs
