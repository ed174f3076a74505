// What the endpoint services share: the engine, tokenizer, chat template and the protocol limits.
// Built once at startup by whoever owns the model (gemmaserve serve, or a test).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "server/api_error.h"
#include "server/image_input.h"
#include "server/openai_protocol.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

struct ServingContext {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: /v1/chat/completions answers 400
  Json tokenizer_config = Json::object();        // special tokens for per-request templates
  bool allow_request_chat_template = true;       // a request's own `chat_template` field
  Json default_chat_template_kwargs = Json::object();
  ProtocolLimits limits;
  std::string model_root;                        // the checkpoint path /v1/models reports
  bool reasoning_content_alias = true;           // also emit `reasoning_content`
  const ModelConfig* model_config = nullptr;     // the runner's (image token ids, vision geometry)
  ImageInputOptions images;                      // image_url parts of chat requests
};

// A streaming response in progress. Pump writes what is ready through `write` (which returns
// false once the client is gone) and returns false when the stream is complete.
class StreamSession {
 public:
  using Writer = std::function<bool(const std::string&)>;
  virtual ~StreamSession() = default;
  virtual bool Pump(const Writer& write) = 0;
  // The client went away: cancel the generation now.
  virtual void Abort() = 0;
};

// Asked now and then while a non-streaming answer is generated: true once its client has gone,
// which cancels the generation (and frees its KV) instead of finishing it for nobody.
using ClientGone = std::function<bool()>;

// A handled request: either a JSON body with a status, or a stream.
struct Reply {
  int status = 200;
  Json body;
  std::unique_ptr<StreamSession> stream;
  static Reply Error(const ApiError& e) { return Reply{e.status, e.ToJson(), nullptr}; }
};

}  // namespace gs::server
