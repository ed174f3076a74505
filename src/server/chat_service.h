// POST /v1/chat/completions: request -> chat template -> token ids -> engine, and the engine's
// tokens -> reasoning / content / tool calls, as one JSON response or an SSE stream.
//
// Tool choice without guided decoding: `auto`, `required` and a named tool all run the tool-call
// parser on the output; `required`/named cannot force the model to call (an answer without a call
// comes back as content with finish_reason "stop"); `none` renders the tools into the prompt (as
// vLLM does) but never parses calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/serving_context.h"

namespace gs::server {

class ChatService {
 public:
  explicit ChatService(const ServingContext& ctx) : ctx_(ctx) {}

  Reply Handle(const Json& body) const;
  // The prompt text of a chat request (also used by /tokenize).
  MaybeError RenderPrompt(const ChatRequest& request, std::string* prompt) const;

 private:
  Reply Complete(ChatRequest& request, std::unique_ptr<class GenerationJob> job) const;
  MaybeError PlaceImages(std::vector<std::shared_ptr<const ProcessedImage>> images,
                         Request* request) const;

  const ServingContext& ctx_;
};

}  // namespace gs::server
