#include "server/model_server.h"

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "util/mapped_file.h"

namespace gs::server {
namespace {

Expected<Json> ReadTokenizerConfig(const std::string& dir) {
  const std::filesystem::path path = std::filesystem::path(dir) / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Json::object();
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path.string()));
  try {
    return Json::parse(text);
  } catch (const std::exception& e) {
    return MakeError(path.string(), ": invalid JSON: ", e.what());
  }
}

// --chat-template is a file when one exists at that path, else the template text itself (vLLM
// accepts both).
Expected<std::unique_ptr<ChatTemplate>> LoadTemplate(const std::string& dir, const std::string& arg,
                                                     const Json& tokenizer_config) {
  std::error_code ec;
  if (!arg.empty() && !std::filesystem::exists(arg, ec)) {
    if (arg.find("{{") == std::string::npos && arg.find("{%") == std::string::npos) {
      return MakeError("--chat-template ", arg, ": no such file (and not a template text)");
    }
    GS_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::FromSources(arg, tokenizer_config,
                                                                  "--chat-template"));
    return std::make_unique<ChatTemplate>(std::move(t));
  }
  auto t = ChatTemplate::FromModelDir(dir, arg);
  if (!t) {
    if (!arg.empty()) return t.error();
    return std::unique_ptr<ChatTemplate>();  // no template: chat requests get a clear 400
  }
  return std::make_unique<ChatTemplate>(std::move(*t));
}

}  // namespace

Expected<std::unique_ptr<ModelServer>> ModelServer::Create(std::unique_ptr<ModelRunner> runner,
                                                           ModelServerOptions o) {
  std::unique_ptr<ModelServer> s(new ModelServer());
  s->runner_ = std::move(runner);
  GS_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(o.model_dir));
  s->tokenizer_ = std::make_unique<Tokenizer>(std::move(tok));
  GS_ASSIGN_OR_RETURN(Json tokenizer_config, ReadTokenizerConfig(o.model_dir));
  GS_ASSIGN_OR_RETURN(s->chat_template_, LoadTemplate(o.model_dir, o.chat_template,
                                                      tokenizer_config));
  s->text_decoder_ = std::make_unique<TokenizerTextDecoder>(*s->tokenizer_);
  o.engine.text_decoder = s->text_decoder_.get();
  GS_ASSIGN_OR_RETURN(s->engine_, Engine::Create(*s->runner_, o.engine));

  ServingContext ctx;
  ctx.engine = s->engine_.get();
  ctx.tokenizer = s->tokenizer_.get();
  ctx.chat_template = s->chat_template_.get();
  ctx.tokenizer_config = tokenizer_config;
  ctx.default_chat_template_kwargs = o.default_chat_template_kwargs;
  ctx.model_root = o.model_dir;
  ctx.model_config = &s->runner_->config();
  ctx.images = o.images;
  ctx.images.model_has_vision = s->runner_->supports_vision();
  if (!ctx.images.allowed_local_media_path.empty()) {
    std::error_code ec;
    const auto root = std::filesystem::canonical(ctx.images.allowed_local_media_path, ec);
    if (ec || !std::filesystem::is_directory(root, ec)) {
      return MakeError("--allowed-local-media-path ", ctx.images.allowed_local_media_path,
                       ": not an existing directory");
    }
    ctx.images.allowed_local_media_path = root.string();
  }
  ctx.limits = o.limits;
  ctx.limits.served_model_names = o.served_model_names;
  if (ctx.limits.served_model_names.empty()) {
    ctx.limits.served_model_names.push_back(o.model_label.empty() ? o.model_dir : o.model_label);
  }
  ctx.limits.max_model_len = s->engine_->info().max_model_len;
  ctx.limits.vocab_size = s->runner_->config().vocab_size;
  ctx.limits.defaults = o.sampling_defaults.value_or(s->engine_->DefaultSampling());
  s->http_ = std::make_unique<HttpServer>(std::move(ctx), o.http);
  return s;
}

ModelServer::~ModelServer() { Shutdown(0); }

Expected<int> ModelServer::Start() {
  GS_ASSIGN_OR_RETURN(int port, http_->Bind());
  GS_RETURN_IF_ERROR(http_->Start());
  url_ = StrCat("http://", http_->host(), ":", port);
  return port;
}

void ModelServer::Shutdown(double drain_seconds) {
  if (shut_down_ || !engine_ || !http_) return;  // (Create may have failed half-way)
  shut_down_ = true;
  http_->BeginDrain();
  // Drain on another thread so that a deadline can turn it into a cancel.
  auto drained = std::async(std::launch::async, [this] { engine_->Shutdown(ShutdownMode::kDrain); });
  const auto deadline = std::chrono::duration<double>(std::max(0.0, drain_seconds));
  if (drained.wait_for(deadline) != std::future_status::ready) {
    engine_->Shutdown(ShutdownMode::kCancel);
  }
  drained.wait();
  // Every request has ended; give streams a moment to write their last chunks and [DONE].
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (http_->stats().active_streams.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  http_->Stop();
}

}  // namespace gs::server
