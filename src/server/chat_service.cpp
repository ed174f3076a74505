#include "server/chat_service.h"

#include "server/generation_job.h"
#include "server/job_stream.h"
#include "server/response_format.h"
#include "server/sse.h"
#include "server/tool_call_constraint.h"
#include "util/str.h"
#include "vision/image_prompt.h"

namespace gs::server {
namespace {

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool IsBlank(const std::string& s) { return Trim(s).empty(); }

// transformers' continue_final_message: the prompt ends right after the final message's text,
// so the model continues it instead of opening a new turn.
MaybeError CutAfterFinalMessage(const Json& messages, std::string* prompt) {
  const Json& last = messages.back();
  std::string text;
  if (last.contains("content") && last["content"].is_string()) {
    text = last["content"].get<std::string>();
  } else if (last.contains("content") && last["content"].is_array()) {
    for (const Json& part : last["content"]) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        text = part["text"].get<std::string>();
      }
    }
  }
  const std::string needle = Trim(text);
  if (needle.empty()) return std::nullopt;
  const size_t at = prompt->rfind(needle);
  if (at == std::string::npos) {
    return BadRequest("continue_final_message: the final message's text is not in the rendered "
                      "prompt",
                      "continue_final_message");
  }
  prompt->resize(at + needle.size());
  return std::nullopt;
}

Json MessageJson(const ServingContext& ctx, const ChoiceDecoder& choice, bool saw_reasoning,
                 const std::string& reasoning, const std::string& content) {
  Json m = Json::object();
  m["role"] = "assistant";
  const bool calls = !choice.tool_calls().empty();
  const bool null_content = (calls || saw_reasoning) && IsBlank(content);
  m["content"] = null_content ? Json() : Json(content);
  const Json r = saw_reasoning ? Json(reasoning) : Json();
  m["reasoning"] = r;
  if (ctx.reasoning_content_alias) m["reasoning_content"] = r;
  if (calls) {
    Json list = Json::array();
    for (const ToolCall& c : choice.tool_calls()) list.push_back(Json(ToolCallToJson(c)));
    m["tool_calls"] = std::move(list);
  }
  return m;
}

class ChatStream : public JobStream {
 public:
  ChatStream(const ServingContext& ctx, std::unique_ptr<GenerationJob> job, const ChatRequest& r)
      : JobStream(std::move(job), r.gen.output, RandomId("chatcmpl-"), "chat.completion.chunk",
                  r.gen.model),
        ctx_(ctx),
        pending_(static_cast<size_t>(job_->num_choices())) {}

 protected:
  bool WriteOpening(const Writer& write) override {
    for (int i = 0; i < job_->num_choices(); ++i) {
      Json choice = Json::object();
      choice["index"] = i;
      choice["delta"] = {{"role", "assistant"}, {"content", ""}};
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = nullptr;
      if (!write(SseData(Chunk(std::move(choice))))) return false;
    }
    return true;
  }

  bool WriteDelta(int index, ChoiceDelta& d, const Writer& write) override {
    // Tokens whose text is still held back (or produced nothing) ride with the next chunk.
    std::vector<TokenOut>& pending = pending_[static_cast<size_t>(index)];
    pending.insert(pending.end(), d.tokens.begin(), d.tokens.end());
    if (d.finished && d.finish == FinishReason::kError) {
      return WriteError(StrCat("generation failed: ", d.error), write);
    }
    if (!d.has_output() && !d.finished) return true;
    Json delta = Json::object();
    if (!d.content.empty()) delta["content"] = d.content;
    if (!d.reasoning.empty()) {
      delta["reasoning"] = d.reasoning;
      if (ctx_.reasoning_content_alias) delta["reasoning_content"] = d.reasoning;
    }
    if (!d.tool_calls.empty()) {
      Json calls = Json::array();
      for (const ToolCallDelta& t : d.tool_calls) calls.push_back(Json(ToolCallDeltaToJson(t)));
      delta["tool_calls"] = std::move(calls);
    }
    Json choice = Json::object();
    choice["index"] = index;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = output_.logprobs
                             ? Json{{"content", ChatLogprobEntries(*ctx_.tokenizer, pending,
                                                                   output_.return_tokens_as_token_ids,
                                                                   output_.top_logprobs)}}
                             : Json();
    const ChoiceDecoder& decoder = job_->choice(index);
    choice["finish_reason"] = FinishReasonJson(d, !decoder.tool_calls().empty());
    if (d.finished) choice["stop_reason"] = StopReasonJson(d, job_->request(index / job_->n()));
    if (output_.return_token_ids) choice["token_ids"] = TokenIdsJson(pending);
    pending.clear();
    return write(SseData(Chunk(std::move(choice))));
  }

 private:
  const ServingContext& ctx_;
  std::vector<std::vector<TokenOut>> pending_;
};

}  // namespace

// The template wrote one image token per image; each becomes boi + n × image token + eoi with n
// the image's soft-token count, and the engine learns where each image's tokens sit.
MaybeError ChatService::PlaceImages(std::vector<std::shared_ptr<const ProcessedImage>> images,
                                    Request* request) const {
  if (images.empty()) return std::nullopt;
  std::vector<int> soft_tokens;
  for (const auto& im : images) soft_tokens.push_back(im->num_soft_tokens);
  auto expanded = ExpandImagePlaceholders(*ctx_.model_config, request->prompt, soft_tokens, false);
  if (!expanded.ok()) {
    return BadRequest(StrCat("the rendered prompt does not match the images: ",
                             expanded.error().message,
                             " (does a message's text contain the image token?)"),
                      "messages");
  }
  request->prompt = std::move(expanded->ids);
  for (size_t i = 0; i < images.size(); ++i) {
    request->images.push_back({expanded->first_image_token[i], std::move(images[i])});
  }
  return std::nullopt;
}

MaybeError ChatService::RenderPrompt(const ChatRequest& request, std::string* prompt) const {
  const ChatTemplate* tmpl = ctx_.chat_template;
  Expected<ChatTemplate> own = MakeError("unused");
  if (request.chat_template) {
    if (!ctx_.allow_request_chat_template) {
      return BadRequest("this server does not accept a per-request 'chat_template'",
                        "chat_template");
    }
    own = ChatTemplate::FromSources(*request.chat_template, ctx_.tokenizer_config,
                                    "request chat_template");
    if (!own) return BadRequest(own.error().message, "chat_template");
    tmpl = &*own;
  }
  if (!tmpl) {
    return BadRequest("the model has no chat template (pass --chat-template or use "
                      "/v1/completions)",
                      "messages");
  }
  Expected<std::string> text = tmpl->Render(request.render);
  if (!text) return BadRequest(StrCat("chat template: ", text.error().message), "messages");
  *prompt = std::move(*text);
  if (request.continue_final_message) {
    if (MaybeError e = CutAfterFinalMessage(request.render["messages"], prompt)) return e;
  }
  return std::nullopt;
}

MaybeError ChatService::AddToolConstraint(const ChatRequest& request, Request* engine_request) const {
  if (request.tool_choice != ToolChoice::kRequired && request.tool_choice != ToolChoice::kNamed) {
    return std::nullopt;
  }
  ToolCallConstraintOptions o;
  if (request.tool_choice == ToolChoice::kNamed) {
    o.function_names.push_back(request.named_tool);
  } else {
    for (const Json& t : request.render["tools"]) {
      const Json* name = t.contains("function") && t["function"].contains("name")
                             ? &t["function"]["name"] : nullptr;
      if (name && name->is_string()) o.function_names.push_back(name->get<std::string>());
    }
  }
  o.close_after_tokens = ctx_.limits.tool_call_close_after_tokens;
  std::call_once(pieces_once_, [this] { pieces_ = std::make_shared<TokenPieces>(*ctx_.tokenizer); });
  auto factory = MakeToolCallConstraint(pieces_, *ctx_.tokenizer, std::move(o));
  if (!factory) return BadRequest(factory.error().message, "tool_choice");
  engine_request->constraint = std::move(*factory);
  return std::nullopt;
}

Reply ChatService::Handle(const Json& body, const ClientGone& gone) const {
  ChatRequest request;
  if (MaybeError e = ParseChatRequest(body, ctx_.limits, ctx_.default_chat_template_kwargs,
                                      &request)) {
    return Reply::Error(*e);
  }
  std::vector<std::shared_ptr<const ProcessedImage>> images;
  static const ModelConfig kNoModel;  // only a test context lacks the config (and vision)
  if (MaybeError e = LoadChatImages(body, ctx_.model_config ? *ctx_.model_config : kNoModel,
                                    ctx_.images, &images)) {
    return Reply::Error(*e);
  }
  std::string prompt;
  if (MaybeError e = RenderPrompt(request, &prompt)) return Reply::Error(*e);
  Request engine_request = request.gen.engine;
  engine_request.prompt = ctx_.tokenizer->Encode(prompt, request.add_special_tokens);
  if (MaybeError e = PlaceImages(std::move(images), &engine_request)) return Reply::Error(*e);
  if (MaybeError e = CheckPromptLength(engine_request.prompt.size(), engine_request,
                                       ctx_.limits.max_model_len)) {
    return Reply::Error(*e);
  }
  if (MaybeError e = AddToolConstraint(request, &engine_request)) return Reply::Error(*e);
  ChoiceConfig config;
  config.tokenizer = ctx_.tokenizer;
  config.skip_special_tokens = engine_request.skip_special_tokens;
  for (const std::string& s : engine_request.stop) config.longest_stop = std::max(config.longest_stop, s.size());
  config.include_stop_str = request.gen.output.include_stop_str_in_output;
  config.chat = true;
  config.parse_tools = request.tool_choice != ToolChoice::kNone;
  config.include_reasoning = request.include_reasoning;
  std::unique_ptr<GenerationJob> job;
  std::vector<Request> requests;
  requests.push_back(std::move(engine_request));
  if (auto e = GenerationJob::Start(*ctx_.engine, std::move(requests), config, &job)) {
    return Reply::Error(*e);
  }
  if (request.gen.output.stream) {
    Reply reply;
    reply.stream = std::make_unique<ChatStream>(ctx_, std::move(job), request);
    return reply;
  }
  return Complete(request, std::move(job), gone);
}

Reply ChatService::Complete(ChatRequest& request, std::unique_ptr<GenerationJob> job,
                            const ClientGone& gone) const {
  const int num = job->num_choices();
  struct Acc {
    std::string reasoning, content;
    std::vector<TokenOut> tokens;
    ChoiceDelta last;
  };
  std::vector<Acc> acc(static_cast<size_t>(num));
  const bool finished = job->WaitAll(
      [&](int index, ChoiceDelta& d) {
        Acc& a = acc[static_cast<size_t>(index)];
        a.reasoning += d.reasoning;
        a.content += d.content;
        a.tokens.insert(a.tokens.end(), d.tokens.begin(), d.tokens.end());
        if (d.finished) a.last = std::move(d);
      },
      gone);
  if (!finished) return Reply::Error(ClientClosed());
  const OutputOptions& out = request.gen.output;
  Json choices = Json::array();
  for (int i = 0; i < num; ++i) {
    Acc& a = acc[static_cast<size_t>(i)];
    if (a.last.finish == FinishReason::kError) {
      return Reply::Error(InternalError(StrCat("generation failed: ", a.last.error)));
    }
    const ChoiceDecoder& decoder = job->choice(i);
    Json c = Json::object();
    c["index"] = i;
    c["message"] = MessageJson(ctx_, decoder, decoder.saw_reasoning() && request.include_reasoning,
                               a.reasoning, a.content);
    c["logprobs"] = out.logprobs ? Json{{"content", ChatLogprobEntries(
                                                        *ctx_.tokenizer, a.tokens,
                                                        out.return_tokens_as_token_ids,
                                                        out.top_logprobs)}}
                                 : Json();
    c["finish_reason"] = FinishReasonJson(a.last, !decoder.tool_calls().empty());
    c["stop_reason"] = StopReasonJson(a.last, job->request(0));
    if (out.return_token_ids) c["token_ids"] = TokenIdsJson(a.tokens);
    choices.push_back(std::move(c));
  }
  Json body = Json::object();
  body["id"] = RandomId("chatcmpl-");
  body["object"] = "chat.completion";
  body["created"] = UnixSeconds();
  body["model"] = request.gen.model;
  body["choices"] = std::move(choices);
  body["usage"] = UsageJson(job->usage());
  if (out.return_token_ids) body["prompt_token_ids"] = job->request(0).prompt;
  return Reply{200, std::move(body), nullptr};
}

}  // namespace gs::server
