// Renders OpenAI-style chat requests through a model's Hugging Face chat template, producing the
// same prompt text as vLLM (message normalisation) + transformers (jinja2 rendering).
//
// Template source, in order of preference: an explicit override file, the model's
// chat_template.jinja, the `chat_template` key of tokenizer_config.json (a string, or the list
// form [{"name": "default", "template": ...}, {"name": "tool_use", ...}]). Special tokens
// (bos_token, eos_token, ...) come from tokenizer_config.json, defaulting to <bos>/<eos>.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/jinja/template.h"
#include "util/status.h"

namespace gs {

class ChatTemplate {
 public:
  // template_path may be empty (then tokenizer_config's chat_template is used);
  // tokenizer_config_path may be empty (then default special tokens are used).
  static Expected<ChatTemplate> FromFiles(const std::string& template_path,
                                          const std::string& tokenizer_config_path);
  // Looks for chat_template.jinja and tokenizer_config.json in a model directory; an
  // override_template_path, when given, replaces the model's template.
  static Expected<ChatTemplate> FromModelDir(const std::string& model_dir,
                                             const std::string& override_template_path = "");
  // template_source may be empty to take the template from tokenizer_config.
  static Expected<ChatTemplate> FromSources(const std::string& template_source,
                                            const nlohmann::ordered_json& tokenizer_config,
                                            const std::string& origin = "chat_template");

  // Renders a chat completion request: messages, tools, add_generation_prompt (default true),
  // documents, chat_template_kwargs (merged into the template variables last).
  Expected<std::string> Render(const nlohmann::ordered_json& request,
                               const jinja::RenderLimits& limits = {}) const;
  // The variables the template sees for `request` (after vLLM's message normalisation).
  Expected<nlohmann::ordered_json> BuildContext(const nlohmann::ordered_json& request) const;

  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }

 private:
  std::map<std::string, std::shared_ptr<const jinja::Template>> templates_;  // by name
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

// vLLM's normalisation of one request's messages/tools before rendering (exposed for tests):
// content parts -> {"type":"text"|"image"|"audio"|"video"}, null content -> "", assistant
// reasoning copied to reasoning/reasoning_content, tool_calls[].function.arguments parsed from
// JSON strings into objects (invalid or non-object -> {}), empty tool_calls dropped, text-only
// tool-result parts joined with "\n", tools given description/parameters null defaults.
Expected<nlohmann::ordered_json> NormalizeMessages(const nlohmann::ordered_json& messages);
Expected<nlohmann::ordered_json> NormalizeTools(const nlohmann::ordered_json& tools);

}  // namespace gs
