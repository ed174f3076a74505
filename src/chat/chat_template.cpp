#include "chat/chat_template.h"

#include <filesystem>

#include "util/mapped_file.h"
#include "util/str.h"

namespace gs {
namespace {

using Json = nlohmann::ordered_json;

// The special-token attributes transformers passes to every template (special_tokens_map).
const char* kSpecialTokenKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                   "pad_token", "cls_token", "mask_token"};

// A token entry is either "text" or an AddedToken dict {"content": "text", ...}.
bool TokenText(const Json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    *out = v["content"].get<std::string>();
    return true;
  }
  return false;
}

Json SpecialTokens(const Json& config) {
  Json tokens = Json::object();
  tokens["bos_token"] = "<bos>";
  tokens["eos_token"] = "<eos>";
  if (!config.is_object()) return tokens;
  for (const char* key : kSpecialTokenKeys) {
    std::string text;
    if (config.contains(key) && TokenText(config[key], &text)) tokens[key] = text;
  }
  if (config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    Json extra = Json::array();
    for (const Json& t : config["additional_special_tokens"]) {
      std::string text;
      if (TokenText(t, &text)) extra.push_back(text);
    }
    tokens["additional_special_tokens"] = extra;
  }
  return tokens;
}

Expected<Json> ParseJsonFile(const std::string& path) {
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) return MakeError(path, ": not valid JSON");
  return j;
}

Status ConvertPart(const Json& part, size_t msg_index, Json* out) {
  if (part.is_string()) {
    *out = Json{{"type", "text"}, {"text", part}};
    return Ok();
  }
  if (!part.is_object()) {
    return MakeError("messages[", msg_index, "].content: a content part must be an object");
  }
  const std::string type = part.contains("type") && part["type"].is_string()
                               ? part["type"].get<std::string>()
                               : "";
  if (type == "text" || type == "input_text" || type == "output_text" || type == "refusal" ||
      type == "thinking") {
    const char* field = type == "refusal" ? "refusal" : type == "thinking" ? "thinking" : "text";
    if (!part.contains(field) || part[field].is_null()) {
      *out = nullptr;  // vLLM skips text parts without text
      return Ok();
    }
    *out = Json{{"type", "text"}, {"text", part[field]}};
    return Ok();
  }
  if (type == "image_url" || type == "input_image" || type == "image_pil" ||
      type == "image_embeds") {
    *out = Json{{"type", "image"}};
    return Ok();
  }
  if (type == "audio_url" || type == "input_audio" || type == "audio_embeds") {
    *out = Json{{"type", "audio"}};
    return Ok();
  }
  if (type == "video_url") {
    *out = Json{{"type", "video"}};
    return Ok();
  }
  return MakeError("messages[", msg_index, "].content: unsupported content part type '", type,
                   "'");
}

Status ParseToolCalls(Json* msg, size_t msg_index) {
  Json& calls = (*msg)["tool_calls"];
  if (!calls.is_array()) return Ok();
  if (calls.empty()) {
    msg->erase("tool_calls");
    return Ok();
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    Json& call = calls[i];
    const std::string where = StrCat("messages[", msg_index, "].tool_calls[", i, "]");
    if (!call.is_object()) return MakeError(where, ": must be an object");
    if (call.contains("type") && call["type"] != "function") {
      return MakeError(where, ".type: only 'function' tool calls are supported");
    }
    if (!call.contains("function") || !call["function"].is_object()) {
      return MakeError(where, ".function: must be an object");
    }
    Json& fn = call["function"];
    Json args = fn.contains("arguments") ? fn["arguments"] : Json();
    const bool truthy = !(args.is_null() || (args.is_string() && args.get<std::string>().empty()) ||
                          (args.is_object() && args.empty()) ||
                          (args.is_array() && args.empty()) || (args.is_boolean() && !args) ||
                          (args.is_number() && args == 0));
    if (truthy && args.is_string()) {
      // vLLM: a malformed or non-object arguments string becomes {} so history stays usable.
      args = Json::parse(args.get<std::string>(), nullptr, false);
    }
    fn["arguments"] = (truthy && args.is_object()) ? args : Json::object();
  }
  return Ok();
}

Expected<Json> NormalizeMessage(const Json& m, size_t index) {
  if (!m.is_object()) return MakeError("messages[", index, "]: must be an object");
  if (!m.contains("role") || !m["role"].is_string()) {
    return MakeError("messages[", index, "].role: missing or not a string");
  }
  const std::string role = m["role"].get<std::string>();
  Json out = Json::object();
  out["role"] = role;
  const Json content = m.contains("content") ? m["content"] : Json();
  if (content.is_null()) {
    out["content"] = "";
  } else if (content.is_string()) {
    out["content"] = content;
  } else if (content.is_array()) {
    Json parts = Json::array();
    for (const Json& p : content) {
      Json converted;
      GS_RETURN_IF_ERROR(ConvertPart(p, index, &converted));
      if (!converted.is_null()) parts.push_back(std::move(converted));
    }
    out["content"] = std::move(parts);
  } else {
    return MakeError("messages[", index, "].content: must be a string, a list or null");
  }
  if (role == "assistant") {
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) out["tool_calls"] = m["tool_calls"];
    Json reasoning = m.contains("reasoning") ? m["reasoning"] : Json();
    if (reasoning.is_null() && m.contains("reasoning_content")) reasoning = m["reasoning_content"];
    if (!reasoning.is_null()) {
      out["reasoning"] = reasoning;
      out["reasoning_content"] = reasoning;
    }
    if (out.contains("tool_calls")) GS_RETURN_IF_ERROR(ParseToolCalls(&out, index));
  } else if (role == "tool") {
    if (m.contains("tool_call_id")) out["tool_call_id"] = m["tool_call_id"];
    // vLLM flattens text-only tool results to one string joined by newlines.
    if (out["content"].is_array()) {
      bool text_only = true;
      std::string joined;
      size_t n = 0;
      for (const Json& p : out["content"]) {
        if (p["type"] != "text") text_only = false;
      }
      if (text_only) {
        for (const Json& p : out["content"]) {
          if (n++) joined += "\n";
          if (p["text"].is_string()) joined += p["text"].get<std::string>();
        }
        out["content"] = joined;
      }
    }
  }
  if (m.contains("name") && m["name"].is_string()) out["name"] = m["name"];
  if (role == "developer") out["tools"] = m.contains("tools") ? m["tools"] : Json();
  return out;
}

}  // namespace

Expected<Json> NormalizeMessages(const Json& messages) {
  if (!messages.is_array()) return MakeError("messages: must be a list");
  Json out = Json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    GS_ASSIGN_OR_RETURN(Json m, NormalizeMessage(messages[i], i));
    out.push_back(std::move(m));
  }
  return out;
}

Expected<Json> NormalizeTools(const Json& tools) {
  if (tools.is_null()) return Json();
  if (!tools.is_array()) return MakeError("tools: must be a list");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object() ||
        !t["function"].contains("name") || !t["function"]["name"].is_string()) {
      return MakeError("tools[", i, "]: expected {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    // Pydantic's model_dump: declared fields first (with None defaults), extra fields after.
    const Json& fn = t["function"];
    Json fn_out = Json::object();
    fn_out["name"] = fn["name"];
    fn_out["description"] = fn.contains("description") ? fn["description"] : Json();
    fn_out["parameters"] = fn.contains("parameters") ? fn["parameters"] : Json();
    for (auto it = fn.begin(); it != fn.end(); ++it) {
      if (!fn_out.contains(it.key())) fn_out[it.key()] = it.value();
    }
    Json tool = Json::object();
    tool["type"] = t.contains("type") ? t["type"] : Json("function");
    tool["function"] = std::move(fn_out);
    for (auto it = t.begin(); it != t.end(); ++it) {
      if (!tool.contains(it.key())) tool[it.key()] = it.value();
    }
    out.push_back(std::move(tool));
  }
  return out;
}

Expected<ChatTemplate> ChatTemplate::FromSources(const std::string& template_source,
                                                 const Json& tokenizer_config,
                                                 const std::string& origin) {
  ChatTemplate ct;
  ct.special_tokens_ = SpecialTokens(tokenizer_config);
  std::map<std::string, std::string> sources;
  if (!template_source.empty()) {
    sources["default"] = template_source;
  } else if (tokenizer_config.is_object() && tokenizer_config.contains("chat_template")) {
    const Json& ct_json = tokenizer_config["chat_template"];
    if (ct_json.is_string()) {
      sources["default"] = ct_json.get<std::string>();
    } else if (ct_json.is_array()) {
      for (const Json& entry : ct_json) {
        if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
            !entry["name"].is_string() || !entry["template"].is_string()) {
          return MakeError(origin, ": chat_template list entries need string name and template");
        }
        sources[entry["name"].get<std::string>()] = entry["template"].get<std::string>();
      }
    } else {
      return MakeError(origin, ": chat_template must be a string or a list of named templates");
    }
  }
  if (sources.empty()) return MakeError(origin, ": no chat template found");
  for (const auto& [name, src] : sources) {
    const std::string label = name == "default" ? origin : StrCat(origin, "[", name, "]");
    GS_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::Parse(src, label));
    ct.templates_[name] = std::make_shared<const jinja::Template>(std::move(t));
  }
  return ct;
}

Expected<ChatTemplate> ChatTemplate::FromFiles(const std::string& template_path,
                                               const std::string& tokenizer_config_path) {
  Json config = Json::object();
  if (!tokenizer_config_path.empty()) {
    GS_ASSIGN_OR_RETURN(config, ParseJsonFile(tokenizer_config_path));
  }
  std::string source;
  if (!template_path.empty()) {
    GS_ASSIGN_OR_RETURN(source, ReadTextFile(template_path));
    if (source.empty()) return MakeError(template_path, ": chat template file is empty");
  }
  const std::string origin = !template_path.empty() ? template_path
                             : !tokenizer_config_path.empty()
                                 ? StrCat(tokenizer_config_path, ":chat_template")
                                 : std::string("chat_template");
  return FromSources(source, config, origin);
}

Expected<ChatTemplate> ChatTemplate::FromModelDir(const std::string& model_dir,
                                                  const std::string& override_template_path) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  const fs::path config = dir / "tokenizer_config.json";
  const fs::path jinja_file = dir / "chat_template.jinja";
  std::error_code ec;
  std::string template_path = override_template_path;
  if (template_path.empty() && fs::exists(jinja_file, ec)) template_path = jinja_file.string();
  return FromFiles(template_path, fs::exists(config, ec) ? config.string() : "");
}

Expected<Json> ChatTemplate::BuildContext(const Json& request) const {
  if (!request.is_object()) return MakeError("request: must be a JSON object");
  if (!request.contains("messages")) return MakeError("request: missing 'messages'");
  Json ctx = special_tokens_;
  GS_ASSIGN_OR_RETURN(ctx["messages"], NormalizeMessages(request["messages"]));
  GS_ASSIGN_OR_RETURN(ctx["tools"],
                      NormalizeTools(request.contains("tools") ? request["tools"] : Json()));
  ctx["documents"] = request.contains("documents") ? request["documents"] : Json();
  ctx["add_generation_prompt"] =
      request.contains("add_generation_prompt") ? request["add_generation_prompt"] : Json(true);
  if (request.contains("chat_template_kwargs") && !request["chat_template_kwargs"].is_null()) {
    const Json& kwargs = request["chat_template_kwargs"];
    if (!kwargs.is_object()) return MakeError("chat_template_kwargs: must be an object");
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) ctx[it.key()] = it.value();
  }
  return ctx;
}

Expected<std::string> ChatTemplate::Render(const Json& request,
                                           const jinja::RenderLimits& limits) const {
  Json ctx;
  try {
    GS_ASSIGN_OR_RETURN(ctx, BuildContext(request));
  } catch (const std::exception& e) {
    return MakeError("request: ", e.what());
  }
  // transformers picks the "tool_use" template for requests with tools when one exists.
  auto it = templates_.end();
  if (!ctx["tools"].is_null() && !ctx["tools"].empty()) it = templates_.find("tool_use");
  if (it == templates_.end()) it = templates_.find("default");
  if (it == templates_.end()) it = templates_.begin();
  return it->second->Render(ctx, limits);
}

}  // namespace gs
