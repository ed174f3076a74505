#include "server/tool_call_constraint.h"

#include <algorithm>
#include <limits>
#include <string_view>

#include "chat/tool_call_syntax.h"
#include "util/str.h"

namespace gs::server {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr const char* kCallOpen = "<|tool_call>";
constexpr const char* kCallClose = "<tool_call|>";
constexpr const char* kStringDelim = "<|\"|>";

// "<0xNN>" -> the byte, for byte-fallback tokens; -1 otherwise.
int FallbackByte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[static_cast<size_t>(i)];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

bool IsCallName(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Whether `s` can still grow into a JSON number (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)
// that a double holds: at most 200 integer digits and 2 exponent digits (JSON parsers such as
// nlohmann's refuse numbers that overflow a double, so guided output never writes one).
bool NumberPrefix(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  auto digit = [&](size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (i == n) return true;
  if (s[i] == '0') {
    ++i;
  } else if (digit(i)) {
    const size_t first = i;
    while (digit(i)) ++i;
    if (i - first > 200) return false;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    while (digit(i)) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t first = i;
    while (digit(i)) ++i;
    if (i - first > 2) return false;
  }
  return i == n;
}

// Whether a bare value can still become a number or one of the literals the parser accepts.
bool BarePrefix(const std::string& s) {
  if (NumberPrefix(s)) return true;
  std::string lower = s;
  for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  for (const char* word : {"true", "false", "null", "none", "nil"}) {
    if (std::string_view(word).substr(0, lower.size()) == lower) {
      // true/false only as "true"/"True" and "false"/"False" (parser rule); the rest any case.
      const bool strict = word[0] == 't' || word[0] == 'f';
      if (!strict || s.substr(1) == lower.substr(1)) return true;
    }
  }
  return false;
}

// Where a call is: the grammar's state plus the text before the arguments, which must stay a
// prefix of one of the allowed "call:NAME{" heads.
struct CallState {
  GemmaCallSyntax syntax;
  std::string head;
  bool head_done = false;
  bool done = false;
};

struct Shared {
  std::shared_ptr<const TokenPieces> pieces;
  int32_t open_id = -1;
  std::vector<std::string> heads;  // "call:NAME{"
  // Ids that close things, by priority, for close_after_tokens: outside strings and inside.
  std::vector<std::vector<int32_t>> closers, string_closers;
  int close_after_tokens = 0;
  int candidates = 64;
};

// Feeds `bytes` to `s`; false if they leave the grammar or the allowed names.
bool Feed(const Shared& sh, CallState& s, const std::string& bytes) {
  for (char c : bytes) {
    if (s.done) return true;  // text after the call is free
    if (!s.head_done) {
      s.head += c;
      bool prefix = false;
      for (const std::string& h : sh.heads) {
        if (h.compare(0, s.head.size(), s.head) == 0 && h.size() >= s.head.size()) {
          prefix = true;
          s.head_done = s.head_done || h.size() == s.head.size();
        }
      }
      if (!prefix) return false;
    }
    const GemmaCallSyntax::Step step = s.syntax.Push(c);
    if (step == GemmaCallSyntax::Step::kError) return false;
    if (step == GemmaCallSyntax::Step::kDone) s.done = true;
  }
  // A bare value is only checked when it ends; refuse one that can no longer end well.
  return s.done || !s.syntax.in_bare_value() || BarePrefix(s.syntax.bare_value());
}

class ToolCallConstraint : public TokenConstraint {
 public:
  explicit ToolCallConstraint(std::shared_ptr<const Shared> shared) : sh_(std::move(shared)) {}

  void Mask(std::span<float> logits) override {
    if (phase_ == Phase::kFree) return;
    if (phase_ == Phase::kOpen) {
      Keep(logits, {sh_->open_id});
      return;
    }
    std::vector<int32_t> valid;
    if (sh_->close_after_tokens > 0 && call_tokens_ >= sh_->close_after_tokens) {
      const int32_t closer = Closer();
      if (closer >= 0 && static_cast<size_t>(closer) < logits.size()) valid.push_back(closer);
    }
    if (valid.empty()) valid = ValidAmongTop(logits);
    if (valid.empty()) valid = AllValid(logits.size());
    if (!valid.empty()) Keep(logits, valid);
  }

  void Accept(int32_t token) override {
    if (phase_ == Phase::kFree) return;
    if (phase_ == Phase::kOpen) {
      phase_ = token == sh_->open_id ? Phase::kCall : Phase::kFree;
      return;
    }
    ++call_tokens_;
    const bool ok = static_cast<size_t>(token) < sh_->pieces->size() &&
                    Feed(*sh_, state_, sh_->pieces->bytes(token));
    if (!ok || state_.done) phase_ = Phase::kFree;
  }

 private:
  enum class Phase { kOpen, kCall, kFree };

  bool Allowed(int32_t id) const {
    if (static_cast<size_t>(id) >= sh_->pieces->size()) return false;
    const std::string& b = sh_->pieces->bytes(id);
    if (b.empty()) return false;
    // Special tokens only as call syntax: the string delimiter, and the end marker outside
    // strings (inside one it would be text, which no model means).
    if (sh_->pieces->special(id) && b != kStringDelim &&
        (b != kCallClose || state_.syntax.in_string())) {
      return false;
    }
    CallState copy = state_;
    return Feed(*sh_, copy, b);
  }

  // The token that brings the call closest to its end: the string delimiter inside a string,
  // else the first valid of `<tool_call|>` } ] : <|"|> 0 (see the header); -1 if none is valid.
  int32_t Closer() const {
    const auto& groups = state_.syntax.in_string() ? sh_->string_closers : sh_->closers;
    for (const std::vector<int32_t>& ids : groups) {
      for (int32_t id : ids) {
        if (Allowed(id)) return id;
      }
    }
    return -1;
  }

  // Every valid token: only those whose first byte the grammar takes next are checked.
  std::vector<int32_t> AllValid(size_t vocab) const {
    std::vector<int32_t> valid;
    for (int b = 0; b < 256; ++b) {
      CallState copy = state_;
      if (!Feed(*sh_, copy, std::string(1, static_cast<char>(b)))) continue;
      for (int32_t id : sh_->pieces->StartingWith(static_cast<uint8_t>(b))) {
        if (static_cast<size_t>(id) < vocab && Allowed(id)) valid.push_back(id);
      }
    }
    return valid;
  }

  // The valid tokens among the `candidates` largest finite logits.
  std::vector<int32_t> ValidAmongTop(std::span<const float> logits) const {
    // One pass with a min-heap of the k best (most logits fail the first comparison).
    const size_t k = static_cast<size_t>(std::max(1, sh_->candidates));
    auto higher = [&](int32_t a, int32_t b) {
      const float x = logits[static_cast<size_t>(a)], y = logits[static_cast<size_t>(b)];
      return x > y || (x == y && a < b);
    };
    std::vector<int32_t> heap;  // heap.front() = the worst of the best k
    heap.reserve(k + 1);
    for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) {
      if (!(logits[static_cast<size_t>(i)] > kNegInf)) continue;
      if (heap.size() == k && !higher(i, heap.front())) continue;
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), higher);
      if (heap.size() > k) {
        std::pop_heap(heap.begin(), heap.end(), higher);
        heap.pop_back();
      }
    }
    std::sort(heap.begin(), heap.end(), higher);
    std::vector<int32_t> valid;
    for (int32_t id : heap) {
      if (Allowed(id)) valid.push_back(id);
    }
    return valid;
  }

  static void Keep(std::span<float> logits, const std::vector<int32_t>& keep) {
    std::vector<std::pair<int32_t, float>> saved;
    for (int32_t id : keep) {
      if (id >= 0 && static_cast<size_t>(id) < logits.size()) {
        saved.push_back({id, logits[static_cast<size_t>(id)]});
      }
    }
    if (saved.empty()) return;  // never empty the row
    std::fill(logits.begin(), logits.end(), kNegInf);
    for (const auto& [id, v] : saved) logits[static_cast<size_t>(id)] = v;
  }

  std::shared_ptr<const Shared> sh_;
  Phase phase_ = Phase::kOpen;
  CallState state_;
  int call_tokens_ = 0;
};

}  // namespace

TokenPieces::TokenPieces(const Tokenizer& tokenizer)
    : bytes_(tokenizer.vocab_size()), special_(tokenizer.vocab_size(), 0) {
  for (size_t i = 0; i < bytes_.size(); ++i) {
    const int32_t id = static_cast<int32_t>(i);
    const int byte = FallbackByte(tokenizer.IdToToken(id));
    if (byte >= 0) {
      bytes_[i] = std::string(1, static_cast<char>(byte));
    } else {
      const int32_t one[1] = {id};
      bytes_[i] = tokenizer.Decode(one, false);
    }
    special_[i] = tokenizer.IsSpecial(id) ? 1 : 0;
    if (!bytes_[i].empty()) by_first_byte_[static_cast<uint8_t>(bytes_[i][0])].push_back(id);
  }
}

std::vector<int32_t> TokenPieces::IdsOf(const std::string& text) const {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < bytes_.size(); ++i) {
    if (bytes_[i] == text) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

Expected<TokenConstraintFactory> MakeToolCallConstraint(std::shared_ptr<const TokenPieces> pieces,
                                                        const Tokenizer& tokenizer,
                                                        ToolCallConstraintOptions options) {
  auto sh = std::make_shared<Shared>();
  sh->open_id = tokenizer.TokenToId(kCallOpen);
  if (sh->open_id < 0 || static_cast<size_t>(sh->open_id) >= pieces->size()) {
    return MakeError("tool_choice: the tokenizer has no ", kCallOpen,
                     " token, so a tool call cannot be forced");
  }
  for (const std::string& name : options.function_names) {
    if (IsCallName(name)) sh->heads.push_back(StrCat("call:", name, "{"));
  }
  if (sh->heads.empty()) {
    return MakeError("tool_choice: no tool has a name a Gemma 4 call can carry ([A-Za-z0-9_.-], "
                     "1-256 bytes)");
  }
  for (const char* closer : {kCallClose, "}", "]", ":", kStringDelim, "0"}) {
    sh->closers.push_back(pieces->IdsOf(closer));
  }
  sh->string_closers.push_back(pieces->IdsOf(kStringDelim));
  sh->close_after_tokens = options.close_after_tokens;
  sh->candidates = options.candidates;
  sh->pieces = std::move(pieces);
  std::shared_ptr<const Shared> shared = std::move(sh);
  return TokenConstraintFactory(
      [shared] { return std::unique_ptr<TokenConstraint>(new ToolCallConstraint(shared)); });
}

}  // namespace gs::server
