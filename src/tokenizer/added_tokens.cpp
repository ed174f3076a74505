#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace gs {
namespace {

char32_t FirstChar(std::string_view s) {
  char32_t cp = 0;
  DecodeUtf8(s, 0, &cp);
  return cp;
}

char32_t LastChar(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  char32_t cp = 0;
  if (i > 0) DecodeUtf8(s, i - 1, &cp);
  return cp;
}

// Start of the run of whitespace that ends `s` (regex \s*$).
size_t TrailingSpaceStart(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    size_t j = i - 1;
    while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
    char32_t cp = 0;
    DecodeUtf8(s, j, &cp);
    if (!IsUnicodeWhiteSpace(cp)) break;
    i = j;
  }
  return i;
}

// Length of the run of whitespace that starts `s` (regex ^\s*).
size_t LeadingSpaceLength(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    const size_t len = DecodeUtf8(s, i, &cp);
    if (len == 0 || !IsUnicodeWhiteSpace(cp)) break;
    i += len;
  }
  return i;
}

}  // namespace

Status AddedTokenMatcher::Add(std::string_view pattern, int32_t index) {
  int32_t node = 0;
  for (unsigned char b : pattern) {
    auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, int32_t{-1}));
    if (it != children.end() && it->first == b) {
      node = it->second;
    } else {
      const auto next = static_cast<int32_t>(nodes_.size());
      children.insert(it, {b, next});
      nodes_.emplace_back();
      node = next;
    }
  }
  if (nodes_[node].token >= 0) return MakeError("two added tokens match the same text");
  nodes_[node].token = index;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  return Ok();
}

size_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, int32_t* token) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& children = nodes_[node].children;
    const auto b = static_cast<unsigned char>(text[i]);
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, int32_t{-1}));
    if (it == children.end() || it->first != b) break;
    node = it->second;
    if (nodes_[node].token >= 0) {
      best = i + 1 - pos;
      *token = nodes_[node].token;
    }
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, const std::vector<AddedToken>& tokens,
                              const std::function<void(int32_t, size_t, size_t)>& emit) const {
  if (empty()) {
    emit(-1, 0, text.size());
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t index = -1;
    const size_t len = LongestAt(text, pos, &index);
    if (len == 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // the automaton resumes after the match, even a discarded one
    const AddedToken& t = tokens[index];
    if (t.single_word) {
      const bool start_space = start == 0 || !IsUnicodeWordChar(LastChar(text.substr(0, start)));
      const bool stop_space =
          stop == text.size() || !IsUnicodeWordChar(FirstChar(text.substr(stop)));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(TrailingSpaceStart(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += LeadingSpaceLength(text.substr(stop));
    if (start_offset < start) emit(-1, start_offset, start);
    emit(index, start, stop);
    start_offset = stop;
  }
  if (start_offset != text.size()) emit(-1, start_offset, text.size());
}

}  // namespace gs
