#include "server/tokenize_service.h"

namespace gs::server {

Reply TokenizeService::Tokenize(const Json& body) const {
  if (!body.is_object()) return Reply::Error(BadRequest("the request body must be a JSON object"));
  std::string model;
  if (MaybeError e = CheckModel(body, ctx_.limits, &model)) return Reply::Error(*e);
  bool return_strs = false;
  if (MaybeError e = ReadBool(body, "return_token_strs", &return_strs)) return Reply::Error(*e);
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    ChatRequest chat;
    if (MaybeError e = ParseChatRequest(body, ctx_.limits, ctx_.default_chat_template_kwargs,
                                        &chat)) {
      return Reply::Error(*e);
    }
    std::string prompt;
    if (MaybeError e = chat_.RenderPrompt(chat, &prompt)) return Reply::Error(*e);
    ids = ctx_.tokenizer->Encode(prompt, chat.add_special_tokens);
  } else {
    std::optional<std::string> prompt;
    if (MaybeError e = ReadString(body, "prompt", &prompt)) return Reply::Error(*e);
    if (!prompt) return Reply::Error(BadRequest("'prompt' or 'messages' is required", "prompt"));
    bool add_special = true;
    if (MaybeError e = ReadBool(body, "add_special_tokens", &add_special)) return Reply::Error(*e);
    ids = ctx_.tokenizer->Encode(*prompt, add_special);
  }
  Json out = Json::object();
  out["count"] = ids.size();
  out["max_model_len"] = ctx_.limits.max_model_len;
  out["tokens"] = ids;
  if (return_strs) {
    Json strs = Json::array();
    for (int32_t id : ids) strs.push_back(ctx_.tokenizer->IdToToken(id));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  return Reply{200, std::move(out), nullptr};
}

Reply TokenizeService::Detokenize(const Json& body) const {
  if (!body.is_object()) return Reply::Error(BadRequest("the request body must be a JSON object"));
  std::string model;
  if (MaybeError e = CheckModel(body, ctx_.limits, &model)) return Reply::Error(*e);
  if (!Has(body, "tokens")) return Reply::Error(BadRequest("'tokens' is required", "tokens"));
  std::vector<int32_t> ids;
  if (MaybeError e = ReadIntList(body, "tokens", 0, ctx_.limits.vocab_size - 1, 1u << 24, &ids)) {
    return Reply::Error(*e);
  }
  return Reply{200, Json{{"prompt", ctx_.tokenizer->Decode(ids, false)}}, nullptr};
}

}  // namespace gs::server
