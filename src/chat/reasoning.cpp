#include "chat/reasoning.h"

#include "chat/marker_scan.h"

namespace gs {
namespace {

using chat_internal::FindFirstMarker;
using chat_internal::HeldBackLength;

constexpr std::string_view kChannelOpen = "<|channel>";
constexpr std::string_view kChannelClose = "<channel|>";
constexpr std::string_view kToolCallOpen = "<|tool_call>";
constexpr std::string_view kThoughtLabel = "thought\n";

}  // namespace

ReasoningStreamParser::ReasoningStreamParser(ReasoningOptions options)
    : options_(options),
      state_(options.starts_in_reasoning ? State::kReasoning : State::kContent),
      saw_reasoning_(options.starts_in_reasoning) {}

ReasoningDelta ReasoningStreamParser::Feed(std::string_view text) {
  ReasoningDelta out;
  pending_.append(text);
  Process(/*at_end=*/false, out);
  return out;
}

ReasoningDelta ReasoningStreamParser::Finish() {
  ReasoningDelta out;
  Process(/*at_end=*/true, out);
  return out;
}

// Consumes as much of pending_ as can be classified. Decisions depend only on whole markers (which
// never overlap) or on the end of output, never on where the input was split.
void ReasoningStreamParser::Process(bool at_end, ReasoningDelta& out) {
  const std::string_view text = pending_;
  size_t pos = 0;
  while (pos < text.size() || (state_ == State::kLabel && at_end)) {
    if (state_ == State::kContent) {
      const auto hit = FindFirstMarker(text, pos, {kChannelOpen, kChannelClose});
      if (hit.pos == std::string_view::npos) {
        const size_t rest = text.size() - pos;
        const size_t keep =
            at_end ? 0 : HeldBackLength(text.substr(pos), {kChannelOpen, kChannelClose});
        out.content.append(text.substr(pos, rest - keep));
        pos = text.size() - keep;
        break;
      }
      out.content.append(text.substr(pos, hit.pos - pos));
      if (hit.which == 0) {  // `<|channel>` opens a block; a stray `<channel|>` is dropped
        state_ = State::kLabel;
        saw_reasoning_ = true;
      }
      pos = hit.pos + (hit.which == 0 ? kChannelOpen.size() : kChannelClose.size());
    } else if (state_ == State::kLabel) {
      // Right after `<|channel>`: drop the `thought\n` label once we can tell it is there.
      const std::string_view rest = text.substr(pos);
      if (rest.substr(0, kThoughtLabel.size()) == kThoughtLabel) {
        pos += kThoughtLabel.size();
      } else if (!at_end && kThoughtLabel.substr(0, rest.size()) == rest) {
        break;  // could still become the label: wait for more text
      }
      state_ = State::kReasoning;
    } else {  // kReasoning
      const std::string_view tool_marker =
          options_.tool_call_ends_reasoning ? kToolCallOpen : kChannelClose;
      const auto hit = FindFirstMarker(text, pos, {kChannelClose, kChannelOpen, tool_marker});
      if (hit.pos == std::string_view::npos) {
        const size_t rest = text.size() - pos;
        const size_t keep =
            at_end ? 0
                   : HeldBackLength(text.substr(pos), {kChannelClose, kChannelOpen, tool_marker});
        out.reasoning.append(text.substr(pos, rest - keep));
        pos = text.size() - keep;
        break;
      }
      out.reasoning.append(text.substr(pos, hit.pos - pos));
      if (hit.which == 0) {  // `<channel|>` closes the block
        state_ = State::kContent;
        pos = hit.pos + kChannelClose.size();
      } else if (hit.which == 1) {  // nested `<|channel>`: dropped, still reasoning
        pos = hit.pos + kChannelOpen.size();
      } else {  // `<|tool_call>`: the block ends; the marker itself belongs to content
        state_ = State::kContent;
        pos = hit.pos;
      }
    }
  }
  pending_.erase(0, pos);
}

ReasoningResult ParseReasoning(std::string_view text, const ReasoningOptions& options) {
  ReasoningStreamParser parser(options);
  ReasoningDelta first = parser.Feed(text);
  ReasoningDelta last = parser.Finish();
  ReasoningResult result;
  result.content = std::move(first.content) + last.content;
  if (parser.saw_reasoning()) result.reasoning = std::move(first.reasoning) + last.reasoning;
  return result;
}

}  // namespace gs
