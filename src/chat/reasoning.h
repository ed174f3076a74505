// Splits Gemma 4 model output text into reasoning ("thinking") and content.
//
// With thinking on, Gemma 4 emits `<|channel>thought\n{reasoning}<channel|>{answer}`; the
// `thought\n` channel label is a structural artefact and is removed (as vLLM's `gemma4` reasoning
// parser does). The rules, identical for the one-shot and the streaming form:
//   * no `<|channel>` in the output                  -> everything is content, no reasoning
//   * `<|channel>` opens a block; `<channel|>` closes it; a leading `thought\n` right after the
//     opener is dropped; what follows the closer is content
//   * unterminated block (output ends inside it)     -> the rest is reasoning (as vLLM)
//   * several blocks                                 -> all of them are reasoning, concatenated
//     (vLLM only honours the first; the chat template's strip_thinking removes all of them)
//   * a stray `<channel|>` outside a block, and a nested `<|channel>` inside one, are dropped
//     (the template's strip_thinking drops them too), so no marker text ever reaches content
//   * text before the first `<|channel>` is content (vLLM discards it)
//   * `<|tool_call>` inside a block ends the block (the model went straight to a call without
//     `<channel|>`; vLLM's is_reasoning_end treats it the same); the marker stays in content for
//     the tool-call parser. Off with ReasoningOptions::tool_call_ends_reasoning = false.
//   * ReasoningOptions::starts_in_reasoning: the prompt already opened the channel (e.g. the
//     template continued a turn with `<|channel>thought\n`), so output starts inside a block.
// Content keeps its bytes exactly (no trimming); the server decides about whitespace / null.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gs {

struct ReasoningOptions {
  bool starts_in_reasoning = false;
  bool tool_call_ends_reasoning = true;
};

struct ReasoningResult {
  // Absent when the output had no thinking block (OpenAI/vLLM `reasoning: null`); present (maybe
  // empty) as soon as a block was opened.
  std::optional<std::string> reasoning;
  std::string content;
};

ReasoningResult ParseReasoning(std::string_view text, const ReasoningOptions& options = {});

// One step of streamed output: the new reasoning text and the new content text. Either may be
// empty. Concatenating all deltas (Feed... then Finish) gives exactly ParseReasoning's result for
// the concatenated input, however the input was split.
struct ReasoningDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

class ReasoningStreamParser {
 public:
  explicit ReasoningStreamParser(ReasoningOptions options = {});

  // Feeds the next piece of decoded text (any split, even inside a marker or a UTF-8 sequence).
  // Text that might still turn into a marker is held back until it is decided.
  ReasoningDelta Feed(std::string_view text);
  // End of output: releases everything held back. Feed must not be called afterwards.
  ReasoningDelta Finish();

  // True once a thinking block was opened (or the options said the output starts in one).
  bool saw_reasoning() const { return saw_reasoning_; }
  // True while the parser is inside a thinking block.
  bool in_reasoning() const { return state_ != State::kContent; }

 private:
  enum class State { kContent, kLabel, kReasoning };
  void Process(bool at_end, ReasoningDelta& out);

  ReasoningOptions options_;
  State state_;
  bool saw_reasoning_;
  std::string pending_;  // text received but not yet classified
};

}  // namespace gs
