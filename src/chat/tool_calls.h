// Extracts Gemma 4 tool calls from model output text and turns them into OpenAI tool calls.
//
// The model writes `<|tool_call>call:NAME{key:value,...}<tool_call|>` (grammar in
// tool_call_syntax.h), possibly several in a row, possibly with text around them. Feed this parser
// the content text (after the reasoning parser took the thinking out).
//   * Each well-formed call becomes {id, type:"function", function:{name, arguments}} where
//     arguments is a JSON object text byte-identical to vLLM's json.dumps(..., ensure_ascii=False).
//   * Everything else is content, byte for byte: text around calls, and any `<|tool_call>` that
//     does not begin a well-formed call (unterminated, bad nesting, bad numbers, bare words,
//     invalid UTF-8, longer than max_call_bytes) is kept as literal text; scanning resumes right
//     after that marker, so a good call later in the text is still found. A stray `<tool_call|>`
//     is content too. Nothing is ever lost: content with each call's `raw` text re-inserted at its
//     `content_offset` is the input.
//   * Unlike vLLM (content = text before the first call), content is all the text outside calls;
//     the server decides whether whitespace-only content becomes null.
//
// Streaming: by default a call is emitted as ONE delta {index, id, name, arguments} when its
// `<tool_call|>` arrives, so the stream always equals the one-shot result, for any split of the
// text. With stream_arguments = true it instead behaves like vLLM: a delta with index/id/name
// (arguments "") once `call:NAME{` is seen, then argument fragments as they are parsed (their
// concatenation is the final arguments). The price: a call that later turns out malformed has
// already been announced; its text then also goes to content and its arguments stay incomplete.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace gs {

using ToolCallIdGenerator = std::function<std::string()>;

// "call_" + 24 random alphanumerics (OpenAI's shape), from a per-thread random engine.
std::string MakeRandomToolCallId();
// Deterministic ids for tests: "call_" + 24 alphanumerics from a generator seeded with `seed`.
ToolCallIdGenerator MakeSeededToolCallIdGenerator(uint64_t seed);

struct ToolCallParserOptions {
  ToolCallIdGenerator make_id;      // empty: MakeRandomToolCallId
  size_t max_call_bytes = 1 << 20;  // a longer call is treated as malformed
  int max_depth = 64;               // nesting limit of the arguments
  bool stream_arguments = false;    // see above
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;      // JSON object text
  std::string raw;            // the exact source text, `<|tool_call>` ... `<tool_call|>`
  size_t content_offset = 0;  // length of the content that preceded this call
};

struct ToolCallParseResult {
  std::string content;
  std::vector<ToolCall> calls;
};

ToolCallParseResult ParseToolCalls(std::string_view text,
                                   const ToolCallParserOptions& options = {});

// OpenAI `message.tool_calls[i]`: {"id", "type":"function", "function":{"name","arguments"}}.
nlohmann::json ToolCallToJson(const ToolCall& call);

// One streamed piece of a tool call, as OpenAI's `delta.tool_calls[i]`: the first delta of a call
// carries id and name, later ones (stream_arguments only) just argument text.
struct ToolCallDelta {
  int index = 0;
  std::string id;    // empty on continuation deltas
  std::string name;  // empty on continuation deltas
  std::string arguments;
};
nlohmann::json ToolCallDeltaToJson(const ToolCallDelta& delta);

struct ToolCallStreamDelta {
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return content.empty() && tool_calls.empty(); }
};

class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallParserOptions options = {});
  ~ToolCallStreamParser();
  ToolCallStreamParser(ToolCallStreamParser&&) noexcept;
  ToolCallStreamParser& operator=(ToolCallStreamParser&&) noexcept;

  // Feeds the next piece of content text (any split). Text that may still be part of a call or a
  // marker is held back until decided.
  ToolCallStreamDelta Feed(std::string_view text);
  // End of output: an unfinished call is malformed and becomes content. Feed must not follow.
  ToolCallStreamDelta Finish();

  // Every well-formed call completed so far, with raw text and content offsets.
  const std::vector<ToolCall>& calls() const { return calls_; }
  // Number of call indexes handed out in deltas (differs from calls().size() only with
  // stream_arguments, when an announced call turned out malformed).
  int num_announced() const { return next_index_; }

 private:
  struct Active;  // the call being parsed
  void Process(bool at_end, ToolCallStreamDelta& out);
  void StartCall();
  void StreamProgress(ToolCallStreamDelta& out);
  void CompleteCall(ToolCallStreamDelta& out);
  // Re-reads an abandoned call's text as content: its marker is literal, the rest is rescanned.
  void AbandonCall(ToolCallStreamDelta& out, std::string_view unread);
  void EmitContent(std::string_view text, ToolCallStreamDelta& out);
  std::string NewId();

  ToolCallParserOptions options_;
  std::string pending_;  // received, not yet consumed
  std::vector<ToolCall> calls_;
  std::unique_ptr<Active> active_;
  size_t content_length_ = 0;
  int next_index_ = 0;
};

}  // namespace gs
