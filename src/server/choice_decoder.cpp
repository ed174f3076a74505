#include "server/choice_decoder.h"

#include <algorithm>

namespace gs::server {

size_t Utf8Boundary(const std::string& text, size_t end, size_t floor) {
  end = std::min(end, text.size());
  while (end > floor && end < text.size() &&
         (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
    --end;
  }
  return end;
}

ChoiceDecoder::ChoiceDecoder(const ChoiceConfig& config)
    : config_(config), detokenizer_(*config.tokenizer, config.skip_special_tokens) {}

void ChoiceDecoder::Add(const TokenEvent& e, ChoiceDelta* out) {
  if (finished_) return;
  if (e.token >= 0) {
    ++num_tokens_;
    out->tokens.push_back({e.token, e.logprob, e.top_logprobs});
  }
  const bool last = e.finish != FinishReason::kNone;
  if (!last) {
    if (e.token >= 0) text_ += detokenizer_.Push(e.token);
    // Keep back what could still be the start of a stop string (the engine reports a stop
    // string only once it is complete).
    const size_t hold = config_.longest_stop > 0 ? config_.longest_stop - 1 : 0;
    const size_t end = text_.size() > hold ? text_.size() - hold : 0;
    if (end > released_) Release(Utf8Boundary(text_, end, released_), false, out);
    return;
  }
  finished_ = true;
  out->finished = true;
  out->finish = e.finish;
  out->stop_token = e.stop_token;
  out->stop_string = e.stop_string;
  out->error = e.error;
  // A stop token's own text is not output (vLLM), unless include_stop_str_in_output.
  const bool stop_token_ended = e.finish == FinishReason::kStop && e.stop_string.empty() &&
                                e.token >= 0 && e.token == e.stop_token;
  if (e.token >= 0 && (!stop_token_ended || config_.include_stop_str)) {
    text_ += detokenizer_.Push(e.token);
  }
  size_t end;
  if (!e.stop_string.empty()) {
    end = e.stop_text_offset + (config_.include_stop_str ? e.stop_string.size() : 0);
  } else {
    text_ += detokenizer_.Flush();
    end = text_.size();
  }
  end = std::max(released_, std::min(end, text_.size()));
  Release(end, true, out);
}

void ChoiceDecoder::Release(size_t end, bool at_end, ChoiceDelta* out) {
  std::string_view piece(text_.data() + released_, end - released_);
  released_ = end;
  if (!config_.chat) {
    out->text.append(piece);
    return;
  }
  Route(piece, at_end, out);
}

void ChoiceDecoder::Route(std::string_view text, bool at_end, ChoiceDelta* out) {
  ReasoningDelta r = reasoning_.Feed(text);
  if (at_end) {
    ReasoningDelta rest = reasoning_.Finish();
    r.reasoning += rest.reasoning;
    r.content += rest.content;
  }
  if (config_.include_reasoning) out->reasoning += r.reasoning;
  RouteContent(r.content, out);
  if (at_end && config_.parse_tools) {
    ToolCallStreamDelta d = tools_.Finish();
    out->content += d.content;
    for (ToolCallDelta& t : d.tool_calls) out->tool_calls.push_back(std::move(t));
  }
}

void ChoiceDecoder::RouteContent(std::string_view content, ChoiceDelta* out) {
  if (!config_.parse_tools) {
    out->content.append(content);
    return;
  }
  if (content.empty()) return;
  ToolCallStreamDelta d = tools_.Feed(content);
  out->content += d.content;
  for (ToolCallDelta& t : d.tool_calls) out->tool_calls.push_back(std::move(t));
}

}  // namespace gs::server
