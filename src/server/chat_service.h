// POST /v1/chat/completions: request -> chat template -> token ids -> engine, and the engine's
// tokens -> reasoning / content / tool calls, as one JSON response or an SSE stream.
//
// Tool choice: `auto`, `required` and a named tool all run the tool-call parser on the output;
// `required` and a named tool also guide decoding (server/tool_call_constraint.h) so that the
// answer starts with a well-formed call of a declared tool (of the named one); `none` renders the
// tools into the prompt (as vLLM does) but never parses calls.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/serving_context.h"

namespace gs::server {

class TokenPieces;

class ChatService {
 public:
  explicit ChatService(const ServingContext& ctx) : ctx_(ctx) {}

  // `gone` (optional) is polled while a non-streaming answer is generated.
  Reply Handle(const Json& body, const ClientGone& gone = {}) const;
  // The prompt text of a chat request (also used by /tokenize).
  MaybeError RenderPrompt(const ChatRequest& request, std::string* prompt) const;

 private:
  Reply Complete(ChatRequest& request, std::unique_ptr<class GenerationJob> job,
                 const ClientGone& gone) const;
  MaybeError PlaceImages(std::vector<std::shared_ptr<const ProcessedImage>> images,
                         Request* request) const;

  // Engine-side guide for tool_choice required / named.
  MaybeError AddToolConstraint(const ChatRequest& request, Request* engine_request) const;

  const ServingContext& ctx_;
  // Token bytes of the vocabulary, built on the first request that forces a tool call.
  mutable std::once_flag pieces_once_;
  mutable std::shared_ptr<const TokenPieces> pieces_;
};

}  // namespace gs::server
