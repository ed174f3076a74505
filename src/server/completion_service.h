// POST /v1/completions: prompts (text, token ids, or a list of either) -> engine -> text, as one
// JSON response or an SSE stream. Text prompts are tokenized with add_special_tokens (default
// true: the tokenizer's post-processor adds <bos>); token-id prompts are used as given.
#pragma once

#include "server/serving_context.h"

namespace gs::server {

class CompletionService {
 public:
  explicit CompletionService(const ServingContext& ctx) : ctx_(ctx) {}
  // `gone` (optional) is polled while a non-streaming answer is generated.
  Reply Handle(const Json& body, const ClientGone& gone = {}) const;

 private:
  const ServingContext& ctx_;
};

}  // namespace gs::server
