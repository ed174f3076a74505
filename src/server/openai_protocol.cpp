#include "server/openai_protocol.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "util/str.h"

namespace gs::server {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

#define GS_API_RETURN_IF_ERROR(expr) \
  do {                               \
    if (MaybeError e_ = (expr)) return e_; \
  } while (0)

MaybeError ParseLogitBias(const Json& body, const ProtocolLimits& limits, SamplingParams* s) {
  if (!Has(body, "logit_bias")) return std::nullopt;
  const Json& bias = body["logit_bias"];
  if (!bias.is_object()) {
    return BadRequest("'logit_bias' must be an object mapping token ids to biases", "logit_bias");
  }
  if (bias.size() > limits.max_logit_bias) {
    return BadRequest(StrCat("'logit_bias' has ", bias.size(), " entries; at most ",
                             limits.max_logit_bias, " are allowed"),
                      "logit_bias");
  }
  s->logit_bias.clear();
  for (auto it = bias.begin(); it != bias.end(); ++it) {
    const std::string& key = it.key();
    int64_t id = -1;
    auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id >= limits.vocab_size) {
      return BadRequest(StrCat("'logit_bias' key '", key, "' is not a token id in [0, ",
                               limits.vocab_size, ")"),
                        "logit_bias");
    }
    if (!it->is_number() || !std::isfinite(it->get<double>()) ||
        std::fabs(it->get<double>()) > 100) {
      return BadRequest(StrCat("'logit_bias' value for token ", key, " must be a number in ",
                               "[-100, 100], got ", Describe(*it)),
                        "logit_bias");
    }
    s->logit_bias.emplace_back(static_cast<int32_t>(id), it->get<float>());
  }
  return std::nullopt;
}

MaybeError ParseSampling(const Json& body, const ProtocolLimits& limits, SamplingParams* s) {
  std::optional<double> d;
  std::optional<int64_t> i;
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "temperature", 0.0, 1e6, &d));
  if (d) s->temperature = *std::exchange(d, std::nullopt);
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "top_p", 0.0, 1.0, &d));
  if (d) {
    if (*d <= 0) return BadRequest(StrCat("'top_p' is ", *d, "; it must be in (0, 1]"), "top_p");
    s->top_p = *std::exchange(d, std::nullopt);
  }
  // vLLM: -1 (and 0) switch top-k off.
  GS_API_RETURN_IF_ERROR(ReadInt(body, "top_k", -1, std::numeric_limits<int32_t>::max(), &i));
  if (i) s->top_k = static_cast<int>(std::max<int64_t>(0, *std::exchange(i, std::nullopt)));
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "min_p", 0.0, 1.0, &d));
  if (d) s->min_p = *std::exchange(d, std::nullopt);
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "presence_penalty", -2.0, 2.0, &d));
  if (d) s->presence_penalty = *std::exchange(d, std::nullopt);
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "frequency_penalty", -2.0, 2.0, &d));
  if (d) s->frequency_penalty = *std::exchange(d, std::nullopt);
  GS_API_RETURN_IF_ERROR(ReadNumber(body, "repetition_penalty", 0.0, 1e6, &d));
  if (d) {
    if (*d <= 0) {
      return BadRequest(StrCat("'repetition_penalty' is ", *d, "; it must be > 0 (1 = off)"),
                        "repetition_penalty");
    }
    s->repetition_penalty = *std::exchange(d, std::nullopt);
  }
  GS_API_RETURN_IF_ERROR(ReadInt(body, "seed", kInt64Min, kInt64Max, &i));
  if (i) s->seed = static_cast<uint64_t>(*i);
  return ParseLogitBias(body, limits, s);
}

MaybeError ParseStops(const Json& body, const ProtocolLimits& limits, Request* r) {
  GS_API_RETURN_IF_ERROR(ReadStringOrList(body, "stop", limits.max_stop_strings, &r->stop));
  for (const std::string& s : r->stop) {
    if (s.empty()) return BadRequest("'stop' strings must not be empty", "stop");
    if (s.size() > limits.max_stop_string_bytes) {
      return BadRequest(StrCat("a 'stop' string has ", s.size(), " bytes; at most ",
                               limits.max_stop_string_bytes, " are allowed"),
                        "stop");
    }
  }
  return ReadIntList(body, "stop_token_ids", 0, limits.vocab_size - 1, limits.max_stop_token_ids,
                     &r->stop_token_ids);
}

MaybeError ParseLengths(const Json& body, bool chat, const ProtocolLimits& limits, Request* r) {
  std::optional<int64_t> max_tokens, i;
  GS_API_RETURN_IF_ERROR(ReadInt(body, "max_tokens", 1, kInt64Max, &max_tokens));
  if (chat) {
    // OpenAI's newer name wins when both are given.
    GS_API_RETURN_IF_ERROR(ReadInt(body, "max_completion_tokens", 1, kInt64Max, &i));
    if (i) max_tokens = i;
  }
  if (max_tokens) {
    if (*max_tokens > limits.max_model_len) {
      return BadRequest(StrCat("'", chat && Has(body, "max_completion_tokens") ? "max_completion_tokens"
                                                                                 : "max_tokens",
                               "' is ", *max_tokens, "; this model's maximum context length is ",
                               limits.max_model_len, " tokens"),
                        "max_tokens");
    }
    r->max_tokens = static_cast<int>(*max_tokens);
  }
  std::optional<int64_t> min_tokens;
  GS_API_RETURN_IF_ERROR(ReadInt(body, "min_tokens", 0, limits.max_model_len, &min_tokens));
  if (min_tokens) {
    if (r->max_tokens && *min_tokens > *r->max_tokens) {
      return BadRequest(StrCat("'min_tokens' (", *min_tokens, ") must not exceed max_tokens (",
                               *r->max_tokens, ")"),
                        "min_tokens");
    }
    r->min_tokens = static_cast<int>(*min_tokens);
  }
  return ReadBool(body, "ignore_eos", &r->ignore_eos);
}

MaybeError ParseLogprobs(const Json& body, bool chat, const ProtocolLimits& limits,
                         GenerationRequest* g) {
  std::optional<int64_t> i;
  if (chat) {
    GS_API_RETURN_IF_ERROR(ReadBool(body, "logprobs", &g->output.logprobs));
    GS_API_RETURN_IF_ERROR(ReadInt(body, "top_logprobs", 0, limits.max_top_logprobs, &i));
    if (i) {
      if (*i > 0 && !g->output.logprobs) {
        return BadRequest("when using 'top_logprobs', 'logprobs' must be set to true",
                          "top_logprobs");
      }
      g->output.top_logprobs = static_cast<int>(*i);
    }
  } else {
    // Completions: logprobs is the number of alternatives (0 = just the chosen token's).
    GS_API_RETURN_IF_ERROR(ReadInt(body, "logprobs", 0, limits.max_top_logprobs, &i));
    if (i) {
      g->output.logprobs = true;
      g->output.top_logprobs = static_cast<int>(*i);
    }
  }
  g->engine.logprobs = g->output.logprobs;
  g->engine.top_logprobs = g->output.top_logprobs;
  GS_API_RETURN_IF_ERROR(
      ReadBool(body, "return_tokens_as_token_ids", &g->output.return_tokens_as_token_ids));
  return ReadBool(body, "return_token_ids", &g->output.return_token_ids);
}

MaybeError ParseStreamOptions(const Json& body, OutputOptions* o) {
  GS_API_RETURN_IF_ERROR(ReadBool(body, "stream", &o->stream));
  if (!Has(body, "stream_options")) return std::nullopt;
  if (!o->stream) {
    return BadRequest("'stream_options' can only be given when 'stream' is true", "stream_options");
  }
  const Json& so = body["stream_options"];
  if (!so.is_object()) return BadRequest("'stream_options' must be an object", "stream_options");
  // vLLM: include_usage defaults to true once stream_options is given.
  o->include_usage = true;
  GS_API_RETURN_IF_ERROR(ReadBool(so, "include_usage", &o->include_usage));
  return ReadBool(so, "continuous_usage_stats", &o->continuous_usage_stats);
}

// Features that change what must be generated and that gemmaserve does not implement: refusing
// them is better than silently returning something the client did not ask for.
MaybeError RejectUnsupported(const Json& body) {
  bool beam = false;
  GS_API_RETURN_IF_ERROR(ReadBool(body, "use_beam_search", &beam));
  if (beam) return BadRequest("beam search is not supported", "use_beam_search");
  if (Has(body, "response_format")) {
    const Json& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
      return BadRequest("'response_format' must be an object with a string 'type'",
                        "response_format");
    }
    if (rf["type"] != "text") {
      return BadRequest(StrCat("response_format type '", rf["type"].get<std::string>(),
                               "' needs guided decoding, which gemmaserve does not support yet"),
                        "response_format");
    }
  }
  for (const char* field : {"structured_outputs", "guided_json", "guided_regex", "guided_choice",
                            "guided_grammar", "prompt_logprobs"}) {
    if (Has(body, field)) {
      return BadRequest(StrCat("'", field, "' is not supported by gemmaserve"), field);
    }
  }
  return std::nullopt;
}

MaybeError ParseGeneration(const Json& body, bool chat, const ProtocolLimits& limits,
                           GenerationRequest* g) {
  if (!body.is_object()) return BadRequest("the request body must be a JSON object");
  GS_API_RETURN_IF_ERROR(CheckModel(body, limits, &g->model));
  GS_API_RETURN_IF_ERROR(RejectUnsupported(body));
  Request& r = g->engine;
  r.sampling = limits.defaults;
  GS_API_RETURN_IF_ERROR(ParseSampling(body, limits, &r.sampling));
  std::optional<int64_t> n;
  GS_API_RETURN_IF_ERROR(ReadInt(body, "n", 1, limits.max_n, &n));
  if (n) r.n = static_cast<int>(*n);
  std::optional<int64_t> best_of;
  GS_API_RETURN_IF_ERROR(ReadInt(body, "best_of", 1, limits.max_n, &best_of));
  if (best_of && *best_of != r.n) {
    return BadRequest("'best_of' different from 'n' is not supported", "best_of");
  }
  GS_API_RETURN_IF_ERROR(ParseStops(body, limits, &r));
  GS_API_RETURN_IF_ERROR(ParseLengths(body, chat, limits, &r));
  GS_API_RETURN_IF_ERROR(ParseLogprobs(body, chat, limits, g));
  GS_API_RETURN_IF_ERROR(ParseStreamOptions(body, &g->output));
  GS_API_RETURN_IF_ERROR(
      ReadBool(body, "include_stop_str_in_output", &g->output.include_stop_str_in_output));
  std::optional<std::string> salt;
  GS_API_RETURN_IF_ERROR(ReadString(body, "cache_salt", &salt));
  if (salt) r.cache_salt = *salt;
  return std::nullopt;
}

MaybeError ParseTools(const Json& body, ChatRequest* c) {
  const bool has_tools = Has(body, "tools");
  if (has_tools) {
    const Json& tools = body["tools"];
    if (!tools.is_array()) return BadRequest("'tools' must be a list", "tools");
    for (const Json& t : tools) {
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object() ||
          !t["function"].contains("name") || !t["function"]["name"].is_string()) {
        return BadRequest("each entry of 'tools' needs {\"type\": \"function\", \"function\": "
                          "{\"name\": ...}}",
                          "tools");
      }
      if (t.contains("type") && t["type"] != "function") {
        return BadRequest(StrCat("tool type ", Describe(t["type"]), " is not supported"), "tools");
      }
    }
    c->render["tools"] = tools;
  }
  // vLLM: tool_choice defaults to "auto" when tools are given, "none" otherwise.
  c->tool_choice = has_tools && !body["tools"].empty() ? ToolChoice::kAuto : ToolChoice::kNone;
  if (!Has(body, "tool_choice")) return std::nullopt;
  const Json& tc = body["tool_choice"];
  if (tc.is_string()) {
    const std::string s = tc.get<std::string>();
    if (s == "none") {
      c->tool_choice = ToolChoice::kNone;
      return std::nullopt;
    }
    if (s != "auto" && s != "required") {
      return BadRequest(StrCat("'tool_choice' must be none, auto, required or a named function, ",
                               "got '", s, "'"),
                        "tool_choice");
    }
    c->tool_choice = s == "auto" ? ToolChoice::kAuto : ToolChoice::kRequired;
  } else if (tc.is_object()) {
    if (!tc.contains("function") || !tc["function"].is_object() ||
        !tc["function"].contains("name") || !tc["function"]["name"].is_string()) {
      return BadRequest("a named 'tool_choice' must be {\"type\": \"function\", \"function\": "
                        "{\"name\": ...}}",
                        "tool_choice");
    }
    c->tool_choice = ToolChoice::kNamed;
    c->named_tool = tc["function"]["name"].get<std::string>();
  } else {
    return BadRequest("'tool_choice' must be a string or an object", "tool_choice");
  }
  if (!has_tools || body["tools"].empty()) {
    return BadRequest("when using 'tool_choice', 'tools' must be set", "tool_choice");
  }
  if (c->tool_choice == ToolChoice::kNamed) {
    for (const Json& t : body["tools"]) {
      if (t["function"]["name"] == c->named_tool) return std::nullopt;
    }
    return BadRequest(StrCat("tool '", c->named_tool, "' named by 'tool_choice' is not in 'tools'"),
                      "tool_choice");
  }
  return std::nullopt;
}

MaybeError ParseMessages(const Json& body, ChatRequest* c) {
  if (!body.contains("messages")) return BadRequest("'messages' is required", "messages");
  const Json& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) {
    return BadRequest("'messages' must be a non-empty list", "messages");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return BadRequest(StrCat("messages[", i, "] must be an object with a string 'role'"),
                        "messages");
    }
    if (m.contains("content") && !m["content"].is_null() && !m["content"].is_string() &&
        !m["content"].is_array()) {
      return BadRequest(StrCat("messages[", i, "].content must be a string or a list of parts"),
                        "messages");
    }
  }
  c->render["messages"] = messages;
  return std::nullopt;
}

MaybeError ParseTemplateOptions(const Json& body, const Json& default_kwargs, ChatRequest* c) {
  bool add_generation_prompt = true;
  GS_API_RETURN_IF_ERROR(ReadBool(body, "add_generation_prompt", &add_generation_prompt));
  GS_API_RETURN_IF_ERROR(ReadBool(body, "continue_final_message", &c->continue_final_message));
  if (c->continue_final_message && add_generation_prompt && Has(body, "add_generation_prompt")) {
    return BadRequest("'continue_final_message' and 'add_generation_prompt' cannot both be true",
                      "continue_final_message");
  }
  if (c->continue_final_message) add_generation_prompt = false;
  c->render["add_generation_prompt"] = add_generation_prompt;
  GS_API_RETURN_IF_ERROR(ReadBool(body, "add_special_tokens", &c->add_special_tokens));
  GS_API_RETURN_IF_ERROR(ReadBool(body, "include_reasoning", &c->include_reasoning));
  GS_API_RETURN_IF_ERROR(ReadString(body, "chat_template", &c->chat_template));
  if (Has(body, "documents")) {
    if (!body["documents"].is_array()) return BadRequest("'documents' must be a list", "documents");
    c->render["documents"] = body["documents"];
  }
  Json kwargs = default_kwargs.is_object() ? default_kwargs : Json::object();
  if (Has(body, "chat_template_kwargs")) {
    const Json& k = body["chat_template_kwargs"];
    if (!k.is_object()) {
      return BadRequest("'chat_template_kwargs' must be an object", "chat_template_kwargs");
    }
    for (auto it = k.begin(); it != k.end(); ++it) kwargs[it.key()] = it.value();
  }
  // OpenAI's reasoning_effort switches thinking on unless the kwargs say otherwise.
  std::optional<std::string> effort;
  GS_API_RETURN_IF_ERROR(ReadString(body, "reasoning_effort", &effort));
  if (effort && !kwargs.contains("enable_thinking")) {
    kwargs["enable_thinking"] = *effort != "none" && *effort != "minimal";
  }
  if (!kwargs.empty()) c->render["chat_template_kwargs"] = kwargs;
  return std::nullopt;
}

MaybeError ParsePrompt(const Json& v, const ProtocolLimits& limits, PromptInput* out) {
  if (v.is_string()) {
    out->is_text = true;
    out->text = v.get<std::string>();
    if (out->text.empty()) return BadRequest("'prompt' must not be empty", "prompt");
    return std::nullopt;
  }
  out->is_text = false;
  Json wrapper = Json::object();
  wrapper["prompt"] = v;
  GS_API_RETURN_IF_ERROR(ReadIntList(wrapper, "prompt", 0, limits.vocab_size - 1,
                                     static_cast<size_t>(limits.max_model_len), &out->ids));
  if (out->ids.empty()) return BadRequest("'prompt' must not be empty", "prompt");
  return std::nullopt;
}

}  // namespace

MaybeError CheckModel(const Json& body, const ProtocolLimits& limits, std::string* model) {
  *model = limits.served_model_names.empty() ? "" : limits.served_model_names.front();
  std::optional<std::string> asked;
  GS_API_RETURN_IF_ERROR(ReadString(body, "model", &asked));
  if (!asked || asked->empty()) return std::nullopt;
  if (std::find(limits.served_model_names.begin(), limits.served_model_names.end(), *asked) ==
      limits.served_model_names.end()) {
    return NotFound(StrCat("The model `", *asked, "` does not exist."), "model");
  }
  *model = *asked;
  return std::nullopt;
}

MaybeError ParseChatRequest(const Json& body, const ProtocolLimits& limits,
                            const Json& default_template_kwargs, ChatRequest* out) {
  GS_API_RETURN_IF_ERROR(ParseGeneration(body, /*chat=*/true, limits, &out->gen));
  GS_API_RETURN_IF_ERROR(ParseMessages(body, out));
  GS_API_RETURN_IF_ERROR(ParseTools(body, out));
  GS_API_RETURN_IF_ERROR(ParseTemplateOptions(body, default_template_kwargs, out));
  // The Gemma 4 reasoning and tool-call parsers read marker tokens (<|channel>, <|tool_call>,
  // <|"|>) that skip_special_tokens would delete, so chat output keeps them (as vLLM's gemma4
  // parsers force); stop tokens never reach the text either way.
  out->gen.engine.skip_special_tokens = false;
  return std::nullopt;
}

MaybeError ParseCompletionRequest(const Json& body, const ProtocolLimits& limits,
                                  CompletionRequest* out) {
  GS_API_RETURN_IF_ERROR(ParseGeneration(body, /*chat=*/false, limits, &out->gen));
  if (!Has(body, "prompt")) return BadRequest("'prompt' is required", "prompt");
  const Json& p = body["prompt"];
  // A list is either one prompt of token ids or a batch (of strings or of id lists).
  const bool batch = p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array());
  if (batch) {
    if (p.size() > limits.max_prompts) {
      return BadRequest(StrCat("'prompt' has ", p.size(), " prompts; at most ", limits.max_prompts,
                               " are allowed"),
                        "prompt");
    }
    for (const Json& item : p) {
      PromptInput in;
      GS_API_RETURN_IF_ERROR(ParsePrompt(item, limits, &in));
      out->prompts.push_back(std::move(in));
    }
  } else if (p.is_string() || p.is_array()) {
    PromptInput in;
    GS_API_RETURN_IF_ERROR(ParsePrompt(p, limits, &in));
    out->prompts.push_back(std::move(in));
  } else {
    return BadRequest("'prompt' must be a string, a list of token ids, or a list of either",
                      "prompt");
  }
  GS_API_RETURN_IF_ERROR(ReadBool(body, "add_special_tokens", &out->add_special_tokens));
  GS_API_RETURN_IF_ERROR(ReadBool(body, "echo", &out->gen.output.echo));
  bool skip = true;
  GS_API_RETURN_IF_ERROR(ReadBool(body, "skip_special_tokens", &skip));
  out->gen.engine.skip_special_tokens = skip;
  if (Has(body, "suffix")) return BadRequest("'suffix' is not supported", "suffix");
  return std::nullopt;
}

MaybeError CheckPromptLength(size_t prompt_tokens, const Request& request, int max_model_len) {
  const int64_t max_tokens = request.max_tokens.value_or(0);
  if (prompt_tokens == 0) return BadRequest("the prompt is empty", "prompt");
  if (static_cast<int64_t>(prompt_tokens) + std::max<int64_t>(1, max_tokens) > max_model_len) {
    if (request.max_tokens) {
      return BadRequest(StrCat("This model's maximum context length is ", max_model_len,
                               " tokens. However, you requested ", prompt_tokens + max_tokens,
                               " tokens (", prompt_tokens, " in the messages, ", max_tokens,
                               " in the completion). Please reduce the length of the messages or ",
                               "completion."),
                        "max_tokens");
    }
    return BadRequest(StrCat("This model's maximum context length is ", max_model_len,
                             " tokens. However, your prompt has ", prompt_tokens,
                             " tokens, which leaves no room for the completion."),
                      "prompt");
  }
  return std::nullopt;
}

}  // namespace gs::server
