// Helpers for scanning streamed text for Gemma 4 special-token markers (`<|channel>`,
// `<tool_call|>`, ...). The streaming parsers see the detokenized text in arbitrary pieces, so a
// marker may arrive split at any byte; these helpers find whole markers and measure how much of a
// buffer's tail must be held back because it could still become one.
//
// Every Gemma 4 marker has its only '<' at position 0, so two occurrences of markers can never
// overlap; the parsers rely on that to make their output independent of how the text was split.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string_view>

namespace gs::chat_internal {

struct MarkerHit {
  size_t pos = std::string_view::npos;  // npos: no marker found
  size_t which = 0;                     // index into the marker list
};

// The earliest whole occurrence of any marker in `text` at or after `from`.
inline MarkerHit FindFirstMarker(std::string_view text, size_t from,
                                 std::initializer_list<std::string_view> markers) {
  MarkerHit best;
  size_t i = 0;
  for (std::string_view m : markers) {
    const size_t p = text.find(m, from);
    if (p < best.pos) best = {p, i};
    ++i;
  }
  return best;
}

// Length of the longest tail of `text` that is a proper prefix of some marker: those bytes may
// become a marker once more text arrives, so they must not be emitted yet.
inline size_t HeldBackLength(std::string_view text,
                             std::initializer_list<std::string_view> markers) {
  size_t best = 0;
  for (std::string_view m : markers) {
    const size_t max_len = m.size() - 1 < text.size() ? m.size() - 1 : text.size();
    for (size_t k = max_len; k > best; --k) {
      if (text.substr(text.size() - k) == m.substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

}  // namespace gs::chat_internal
