// POST /tokenize and POST /detokenize, as vLLM serves them: a completion prompt or a chat
// request (rendered through the chat template) -> token ids; token ids -> text.
#pragma once

#include "server/chat_service.h"
#include "server/serving_context.h"

namespace gs::server {

class TokenizeService {
 public:
  TokenizeService(const ServingContext& ctx, const ChatService& chat) : ctx_(ctx), chat_(chat) {}
  Reply Tokenize(const Json& body) const;
  Reply Detokenize(const Json& body) const;

 private:
  const ServingContext& ctx_;
  const ChatService& chat_;
};

}  // namespace gs::server
