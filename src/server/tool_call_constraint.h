// Guided decoding for tool_choice "required" and a named tool (vLLM guarantees a call there with
// structured outputs). The constraint makes the first generated token `<|tool_call>` and then
// keeps the output inside the Gemma 4 call grammar (chat/tool_call_syntax.h) until the call's
// `<tool_call|>`: the name must be one of the allowed functions (the named one, or any declared
// tool), the arguments must be well-formed, so the tool-call parser always finds a call. After the
// call the model is free again (more calls, or the end of its turn).
//
// How a step is masked: the 64 most likely tokens are checked against the grammar (each one's
// bytes fed to a copy of the parser state) and only the valid ones stay; if none of them is
// valid, the whole vocabulary is checked (only tokens whose first byte the grammar takes). On a
// 262144-id vocabulary that is ~0.5 ms a step, more when the full check runs. Greedy decoding therefore picks exactly the most likely
// valid token; sampling samples among the valid tokens of the top 64 (as a top-k of 64 would,
// Gemma 4's default). Special tokens other than the string delimiter `<|"|>` and `<tool_call|>`
// are never allowed inside a call (so an end-of-turn token cannot cut it short), and a bare value
// must stay a prefix of a number or literal (the parser only judges it when it ends).
//
// `close_after_tokens` > 0 bounds a call: once that many tokens of it were written, each step
// writes the one token that brings the call closest to its end (inside a string its closing
// `<|"|>`; else the first valid of `<tool_call|>`, `}`, `]`, `:`, `<|"|>`, `0`), which ends any
// call in a few tokens. 0: no bound (the default; max_tokens still applies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/token_constraint.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

// The bytes every token id decodes to on its own (byte-fallback tokens: their byte), and which
// ids are special; built once per tokenizer (the whole vocabulary is decoded).
class TokenPieces {
 public:
  explicit TokenPieces(const Tokenizer& tokenizer);
  size_t size() const { return bytes_.size(); }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  bool special(int32_t id) const { return special_[static_cast<size_t>(id)] != 0; }
  // Ids whose bytes are exactly `text` (for the markers).
  std::vector<int32_t> IdsOf(const std::string& text) const;
  // Ids whose bytes start with `byte` (a grammar that refuses the byte refuses them all).
  const std::vector<int32_t>& StartingWith(uint8_t byte) const { return by_first_byte_[byte]; }

 private:
  std::vector<std::string> bytes_;
  std::vector<char> special_;
  std::vector<std::vector<int32_t>> by_first_byte_ = std::vector<std::vector<int32_t>>(256);
};

struct ToolCallConstraintOptions {
  std::vector<std::string> function_names;  // the call must name one of these
  int close_after_tokens = 0;
  int candidates = 64;
};

// Fails (naming the field) when the vocabulary has no `<|tool_call>` token or no function name is
// a valid Gemma 4 call name.
Expected<TokenConstraintFactory> MakeToolCallConstraint(std::shared_ptr<const TokenPieces> pieces,
                                                        const Tokenizer& tokenizer,
                                                        ToolCallConstraintOptions options);

}  // namespace gs::server
