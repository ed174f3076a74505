// One choice's output, token events in -> text deltas out: the tokenizer's streaming
// detokenizer, stop-string cutting (text that might still begin a stop string is held back, then
// cut at the engine's offset), and for chat the Gemma 4 parsers chained as reasoning -> content ->
// tool calls. Streaming and non-streaming responses are both built from these deltas, so they
// always agree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chat/reasoning.h"
#include "chat/tool_calls.h"
#include "engine/request.h"
#include "tokenizer/streaming_detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

struct ChoiceConfig {
  const Tokenizer* tokenizer = nullptr;
  bool skip_special_tokens = true;  // must equal the engine Request's (stop offsets depend on it)
  size_t longest_stop = 0;          // bytes of the longest stop string
  bool include_stop_str = false;
  bool chat = false;                // run the reasoning parser (and the tool parser if parse_tools)
  bool parse_tools = false;
  bool include_reasoning = true;
};

struct TokenOut {
  int32_t id = -1;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

struct ChoiceDelta {
  std::string text;       // completions: released output text
  std::string reasoning;  // chat
  std::string content;    // chat
  std::vector<ToolCallDelta> tool_calls;
  std::vector<TokenOut> tokens;  // tokens that arrived (logprobs, token ids)
  bool finished = false;
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;
  std::string stop_string;
  std::string error;
  bool has_output() const {
    return !text.empty() || !reasoning.empty() || !content.empty() || !tool_calls.empty();
  }
};

class ChoiceDecoder {
 public:
  explicit ChoiceDecoder(const ChoiceConfig& config);

  // Processes one event of this choice, appending what it releases to `out`.
  void Add(const TokenEvent& event, ChoiceDelta* out);

  bool finished() const { return finished_; }
  int num_tokens() const { return num_tokens_; }
  // Tool calls completed so far (chat with tools).
  const std::vector<ToolCall>& tool_calls() const { return tools_.calls(); }
  bool saw_reasoning() const { return reasoning_.saw_reasoning(); }

 private:
  void Release(size_t end, bool at_end, ChoiceDelta* out);
  void Route(std::string_view text, bool at_end, ChoiceDelta* out);
  void RouteContent(std::string_view content, ChoiceDelta* out);

  ChoiceConfig config_;
  StreamingDetokenizer detokenizer_;
  ReasoningStreamParser reasoning_;
  ToolCallStreamParser tools_;
  std::string text_;     // every byte the detokenizer produced
  size_t released_ = 0;  // bytes of text_ handed on
  int num_tokens_ = 0;
  bool finished_ = false;
};

// Largest end <= `end` that does not split a UTF-8 sequence of `text` (never below `floor`).
size_t Utf8Boundary(const std::string& text, size_t end, size_t floor);

}  // namespace gs::server
