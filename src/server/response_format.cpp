#include "server/response_format.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "util/str.h"

namespace gs::server {

std::string RandomId(const std::string& prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 32; ++i) id += kHex[rng() & 15];
  return id;
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json UsageJson(const Usage& u) {
  Json j = Json::object();
  j["prompt_tokens"] = u.prompt_tokens;
  j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};
  return j;
}

std::string TokenText(const Tokenizer& tokenizer, int32_t id, bool as_token_ids) {
  if (as_token_ids) return StrCat("token_id:", id);
  const int32_t one[1] = {id};
  return tokenizer.Decode(one, false);
}

namespace {

Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// -inf is not JSON; OpenAI clients expect a number (vLLM clamps to -9999.0).
double Finite(float lp) { return std::isfinite(lp) ? lp : -9999.0; }

}  // namespace

Json ChatLogprobEntries(const Tokenizer& tokenizer, const std::vector<TokenOut>& tokens,
                        bool as_token_ids, int top) {
  Json entries = Json::array();
  for (const TokenOut& t : tokens) {
    const std::string text = TokenText(tokenizer, t.id, as_token_ids);
    Json e = Json::object();
    e["token"] = text;
    e["logprob"] = Finite(t.logprob);
    e["bytes"] = Bytes(text);
    Json alts = Json::array();
    for (size_t k = 0; k < t.top.size() && static_cast<int>(k) < top; ++k) {
      const std::string alt = TokenText(tokenizer, t.top[k].token, as_token_ids);
      alts.push_back({{"token", alt}, {"logprob", Finite(t.top[k].logprob)}, {"bytes", Bytes(alt)}});
    }
    e["top_logprobs"] = std::move(alts);
    entries.push_back(std::move(e));
  }
  return entries;
}

Json EmptyCompletionLogprobs() {
  return {{"text_offset", Json::array()},
          {"token_logprobs", Json::array()},
          {"tokens", Json::array()},
          {"top_logprobs", Json::array()}};
}

void AppendCompletionLogprobs(const Tokenizer& tokenizer, const std::vector<TokenOut>& tokens,
                              bool as_token_ids, int top, size_t* offset, Json* lp) {
  for (const TokenOut& t : tokens) {
    const std::string text = TokenText(tokenizer, t.id, as_token_ids);
    (*lp)["text_offset"].push_back(*offset);
    (*lp)["token_logprobs"].push_back(Finite(t.logprob));
    (*lp)["tokens"].push_back(text);
    if (top > 0) {
      Json alts = Json::object();
      for (size_t k = 0; k < t.top.size() && static_cast<int>(k) < top; ++k) {
        alts[TokenText(tokenizer, t.top[k].token, as_token_ids)] = Finite(t.top[k].logprob);
      }
      (*lp)["top_logprobs"].push_back(std::move(alts));
    } else {
      (*lp)["top_logprobs"].push_back(nullptr);
    }
    *offset += text.size();
  }
}

Json FinishReasonJson(const ChoiceDelta& d, bool made_tool_calls) {
  if (!d.finished) return nullptr;
  switch (d.finish) {
    case FinishReason::kStop: return made_tool_calls ? "tool_calls" : "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
    case FinishReason::kNone: break;
  }
  return nullptr;
}

Json StopReasonJson(const ChoiceDelta& d, const Request& request) {
  if (!d.finished || d.finish != FinishReason::kStop) return nullptr;
  if (!d.stop_string.empty()) return d.stop_string;
  if (d.stop_token >= 0 && std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(),
                                     d.stop_token) != request.stop_token_ids.end()) {
    return d.stop_token;
  }
  return nullptr;
}

Json TokenIdsJson(const std::vector<TokenOut>& tokens) {
  Json ids = Json::array();
  for (const TokenOut& t : tokens) ids.push_back(t.id);
  return ids;
}

}  // namespace gs::server
