// OpenAI / vLLM request JSON -> engine types, with validation. Every rejection is an ApiError
// naming the field (status 400 unless noted); nothing here throws or touches the engine.
//
// Fields follow vLLM's ChatCompletionRequest / CompletionRequest: unset sampling fields take the
// model's generation_config.json defaults; unknown fields are ignored (as vLLM does).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "runtime/sampling.h"
#include "server/json_fields.h"

namespace gs::server {

// What the protocol layer needs to know about the served model, and the server's input limits.
struct ProtocolLimits {
  std::vector<std::string> served_model_names;  // the first is the default
  int max_model_len = 0;
  int vocab_size = 0;
  SamplingParams defaults;          // from generation_config.json
  size_t max_stop_strings = 32;
  size_t max_stop_string_bytes = 512;
  size_t max_stop_token_ids = 64;
  size_t max_logit_bias = 1024;
  int max_n = 128;
  size_t max_prompts = 256;         // prompts in one /v1/completions request
  int max_top_logprobs = 20;
  // tool_choice required/named: after this many tokens of a forced call, close it (0: never;
  // server/tool_call_constraint.h).
  int tool_call_close_after_tokens = 0;
};

// How to shape the output, shared by chat and completions.
struct OutputOptions {
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  bool continuous_usage_stats = false;  // stream_options.continuous_usage_stats
  bool include_stop_str_in_output = false;
  bool logprobs = false;
  int top_logprobs = 0;
  bool return_tokens_as_token_ids = false;  // logprob tokens as "token_id:<id>"
  bool return_token_ids = false;            // choices carry `token_ids` (vLLM extension)
  bool echo = false;                        // completions: output starts with the prompt
};

struct GenerationRequest {
  std::string model;  // the served name the response reports
  Request engine;     // sampling, stops, limits; the prompt is filled in later
  OutputOptions output;
};

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ChatRequest {
  GenerationRequest gen;
  // What ChatTemplate::Render reads: messages, tools, documents, add_generation_prompt,
  // chat_template_kwargs (server defaults merged under the request's).
  Json render = Json::object();
  std::optional<std::string> chat_template;  // per-request template source
  bool continue_final_message = false;
  bool add_special_tokens = false;  // the template writes <bos> itself
  ToolChoice tool_choice = ToolChoice::kNone;
  std::string named_tool;
  bool include_reasoning = true;
};

struct PromptInput {
  bool is_text = true;
  std::string text;
  std::vector<int32_t> ids;
};

struct CompletionRequest {
  GenerationRequest gen;
  std::vector<PromptInput> prompts;
  bool add_special_tokens = true;
};

// The request's `model` must be one of the served names (404 otherwise); absent = the default.
MaybeError CheckModel(const Json& body, const ProtocolLimits& limits, std::string* model);

MaybeError ParseChatRequest(const Json& body, const ProtocolLimits& limits,
                            const Json& default_template_kwargs, ChatRequest* out);
MaybeError ParseCompletionRequest(const Json& body, const ProtocolLimits& limits,
                                  CompletionRequest* out);

// Prompt length against max_model_len and max_tokens, with vLLM's message.
MaybeError CheckPromptLength(size_t prompt_tokens, const Request& request, int max_model_len);

}  // namespace gs::server
