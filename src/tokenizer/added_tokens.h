// Added tokens (tokenizer.json "added_tokens"): matched in the text before the model runs,
// leftmost first and longest at that position, honouring single_word / lstrip / rstrip exactly
// as HF's AddedVocabulary::find_matches does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace gs {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class AddedTokenMatcher {
 public:
  bool empty() const { return nodes_.size() <= 1; }
  // Adds `pattern` (non-empty) for `tokens[index]`; fails if the pattern is already present.
  Status Add(std::string_view pattern, int32_t index);

  // Splits `text` into pieces covering it: added-token matches (token index >= 0) and the text
  // between them (index -1). Calls emit(index, start, end) in order.
  void Split(std::string_view text, const std::vector<AddedToken>& tokens,
             const std::function<void(int32_t, size_t, size_t)>& emit) const;

 private:
  struct Node {
    int32_t token = -1;
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
  };
  // Longest pattern starting at `pos`: its length and token index, or 0.
  size_t LongestAt(std::string_view text, size_t pos, int32_t* token) const;

  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace gs
