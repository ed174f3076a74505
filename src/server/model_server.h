// Everything `gemmaserve serve` runs, given a model runner: tokenizer, chat template, engine and
// HTTP server, wired in that order and torn down in reverse. The runner (CPU or CUDA) is built
// by the caller, so this file never touches tensors.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "runtime/model_runner.h"
#include "server/http_server.h"
#include "server/tokenizer_text_decoder.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

struct ModelServerOptions {
  std::string model_dir;                       // tokenizer.json, tokenizer_config.json, template
  std::vector<std::string> served_model_names;  // empty: the model argument as given
  std::string model_label;                     // what --model said (default served name)
  std::string chat_template;                   // a file, or an inline template; empty: the model's
  Json default_chat_template_kwargs = Json::object();
  std::optional<SamplingParams> sampling_defaults;  // unset: the runner config's generation defaults
  EngineConfig engine;                         // text_decoder is filled in here
  HttpServerOptions http;
  ProtocolLimits limits;                       // names, max_model_len and vocab are filled in here
  ImageInputOptions images;                    // model_has_vision is filled in from the runner
};

class ModelServer {
 public:
  static Expected<std::unique_ptr<ModelServer>> Create(std::unique_ptr<ModelRunner> runner,
                                                        ModelServerOptions options);
  ~ModelServer();

  // Binds and serves on a background thread; returns the port.
  Expected<int> Start();
  // Graceful stop: refuse new work, let running requests finish for up to `drain_seconds`, then
  // cancel the rest, let the streams write their endings, close the listener.
  void Shutdown(double drain_seconds);

  Engine& engine() { return *engine_; }
  HttpServer& http() { return *http_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& url() const { return url_; }

 private:
  ModelServer() = default;

  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;
  std::unique_ptr<TokenizerTextDecoder> text_decoder_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<HttpServer> http_;
  std::string url_;
  bool shut_down_ = false;
};

}  // namespace gs::server
