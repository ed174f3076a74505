// Shared helpers for the reasoning / tool-call parser tests: splitting text into stream pieces,
// running the streaming parsers over them, and an independent model of the chat template's
// strip_thinking macro used as the oracle for what counts as content.
#pragma once

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "chat/reasoning.h"
#include "chat/tool_calls.h"

namespace gs::test {

// Pieces of `text` cut at the given (sorted, in-range) offsets.
inline std::vector<std::string> SplitAt(std::string_view text, std::vector<size_t> cuts) {
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t cut : cuts) {
    pieces.emplace_back(text.substr(start, cut - start));
    start = cut;
  }
  pieces.emplace_back(text.substr(start));
  return pieces;
}

// Up to `max_cuts` random cut points (duplicates give empty pieces, which must work too).
inline std::vector<std::string> RandomSplit(std::string_view text, std::mt19937_64& rng,
                                            size_t max_cuts) {
  std::uniform_int_distribution<size_t> count(0, max_cuts);
  std::uniform_int_distribution<size_t> at(0, text.size());
  std::vector<size_t> cuts(count(rng));
  for (size_t& c : cuts) c = at(rng);
  return SplitAt(text, cuts);
}

inline std::vector<std::string> ByteSplit(std::string_view text) {
  std::vector<std::string> pieces;
  for (char c : text) pieces.emplace_back(1, c);
  return pieces;
}

inline ReasoningResult RunReasoningStream(const std::vector<std::string>& pieces,
                                          const ReasoningOptions& options = {}) {
  ReasoningStreamParser parser(options);
  std::string reasoning, content;
  for (const std::string& piece : pieces) {
    ReasoningDelta d = parser.Feed(piece);
    reasoning += d.reasoning;
    content += d.content;
  }
  ReasoningDelta d = parser.Finish();
  reasoning += d.reasoning;
  content += d.content;
  ReasoningResult result;
  result.content = content;
  if (parser.saw_reasoning()) {
    result.reasoning = reasoning;
  } else if (!reasoning.empty()) {
    result.reasoning = "<reasoning text without a block: " + reasoning + ">";  // makes tests fail
  }
  return result;
}

// A streamed tool-call run reassembled the way an OpenAI client does it: per index, the id and
// name of the first delta and the concatenated arguments.
struct StreamedCall {
  std::string id, name, arguments;
  int deltas = 0;
  bool operator==(const StreamedCall& o) const {
    return id == o.id && name == o.name && arguments == o.arguments;
  }
};
struct ToolStreamOutcome {
  std::string content;
  std::vector<StreamedCall> calls;
  bool well_ordered = true;  // every index's first delta had id + name, later ones did not
};

inline ToolStreamOutcome RunToolStream(const std::vector<std::string>& pieces,
                                       const ToolCallParserOptions& options) {
  ToolCallStreamParser parser(options);
  ToolStreamOutcome out;
  auto take = [&out](const ToolCallStreamDelta& d) {
    out.content += d.content;
    for (const ToolCallDelta& tc : d.tool_calls) {
      if (tc.index < 0) {
        out.well_ordered = false;
        continue;
      }
      const bool first = static_cast<size_t>(tc.index) == out.calls.size();
      if (first) {
        out.calls.push_back({tc.id, tc.name, "", 0});
        if (tc.id.empty() || tc.name.empty()) out.well_ordered = false;
      } else if (static_cast<size_t>(tc.index) + 1 != out.calls.size() || !tc.id.empty() ||
                 !tc.name.empty()) {
        out.well_ordered = false;  // a delta for an older call, or a repeated header
        if (static_cast<size_t>(tc.index) >= out.calls.size()) continue;
      }
      out.calls[tc.index].arguments += tc.arguments;
      out.calls[tc.index].deltas++;
    }
  };
  for (const std::string& piece : pieces) take(parser.Feed(piece));
  take(parser.Finish());
  return out;
}

inline std::vector<StreamedCall> AsStreamed(const std::vector<ToolCall>& calls) {
  std::vector<StreamedCall> out;
  for (const ToolCall& c : calls) out.push_back({c.id, c.name, c.arguments, 0});
  return out;
}

// Content with every call's raw text put back where it was: must give back the parser's input.
inline std::string Reassemble(const ToolCallParseResult& r) {
  std::string out;
  size_t from = 0;
  for (const ToolCall& c : r.calls) {
    if (c.content_offset < from || c.content_offset > r.content.size()) return "<bad offsets>";
    out.append(r.content, from, c.content_offset - from);
    out += c.raw;
    from = c.content_offset;
  }
  out.append(r.content, from);
  return out;
}

inline std::vector<std::string> SplitOn(std::string_view text, std::string_view sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t p = text.find(sep, start);
    if (p == std::string_view::npos) break;
    parts.emplace_back(text.substr(start, p - start));
    start = p + sep.size();
  }
  parts.emplace_back(text.substr(start));
  return parts;
}

// The Gemma 4 template's strip_thinking macro, transcribed step by step (split on `<channel|>`,
// keep what precedes `<|channel>` in each part), without the final `| trim`; plus the pieces it
// throws away, which are the reasoning (the first piece after a `<|channel>` of each part loses
// its `thought\n` label). Valid when the output starts outside a block and no `<|tool_call>` sits
// inside one (ReasoningOptions::tool_call_ends_reasoning is the parser's addition).
inline ReasoningResult StripThinkingModel(std::string_view text) {
  ReasoningResult r;
  for (const std::string& part : SplitOn(text, "<channel|>")) {
    const std::vector<std::string> pieces = SplitOn(part, "<|channel>");
    r.content += pieces[0];
    for (size_t i = 1; i < pieces.size(); ++i) {
      std::string_view piece = pieces[i];
      if (i == 1 && piece.substr(0, 8) == "thought\n") piece.remove_prefix(8);
      if (!r.reasoning) r.reasoning = "";
      *r.reasoning += piece;
    }
  }
  return r;
}

}  // namespace gs::test
