#include "tokenizer/components.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace gs {
namespace {

// Non-overlapping occurrences of a non-empty literal, left to right, as (start, end) pairs.
void FindAll(std::string_view text, std::string_view pattern,
             std::vector<std::pair<size_t, size_t>>* out) {
  out->clear();
  size_t from = 0;
  while (true) {
    const size_t at = text.find(pattern, from);
    if (at == std::string_view::npos) return;
    out->emplace_back(at, at + pattern.size());
    from = at + pattern.size();
  }
}

std::string ReplaceAll(std::string_view text, std::string_view pattern, std::string_view content) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  size_t from = 0;
  while (true) {
    const size_t at = text.find(pattern, from);
    if (at == std::string_view::npos) break;
    out.append(text.substr(from, at - from));
    out.append(content);
    from = at + pattern.size();
  }
  out.append(text.substr(from));
  return out;
}

struct Piece {
  size_t start, end;
  bool flag;  // is_match before behaviours, "remove" after
};

// HF NormalizedString::split: match list -> pieces to keep, per delimiter behaviour.
void ApplyBehavior(const std::vector<Piece>& matches, SplitBehavior behavior,
                   std::vector<Piece>* out) {
  out->clear();
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Piece& m : matches) out->push_back({m.start, m.end, false});
      return;
    case SplitBehavior::kRemoved:
      *out = matches;
      return;
    case SplitBehavior::kContiguous:
      for (const Piece& m : matches) {
        if (m.flag == previous_match && !out->empty()) {
          out->back().end = m.end;
        } else {
          out->push_back({m.start, m.end, false});
        }
        previous_match = m.flag;
      }
      return;
    case SplitBehavior::kMergedWithPrevious:
      for (const Piece& m : matches) {
        if (m.flag && !previous_match && !out->empty()) {
          out->back().end = m.end;
        } else {
          out->push_back({m.start, m.end, false});
        }
        previous_match = m.flag;
      }
      return;
    case SplitBehavior::kMergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->flag && !previous_match && !out->empty()) {
          out->back().start = it->start;
        } else {
          out->push_back({it->start, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(out->begin(), out->end());
      return;
  }
}

}  // namespace

std::string_view Normalizer::Apply(std::string_view in, std::string* scratch) const {
  std::string_view current = in;
  std::string next;
  for (const NormalizerStep& step : steps_) {
    if (step.kind == NormalizerStep::Kind::kReplace) {
      if (current.find(step.pattern) == std::string_view::npos) continue;
      next = ReplaceAll(current, step.pattern, step.content);
    } else {
      if (current.empty()) continue;
      next = step.content;
      next.append(current);
    }
    scratch->swap(next);
    current = *scratch;
  }
  return current;
}

void PreTokenizer::Apply(std::string_view in, std::vector<std::string_view>* out) const {
  out->clear();
  if (!in.empty()) out->push_back(in);
  std::vector<std::string_view> next;
  std::vector<std::pair<size_t, size_t>> found;
  std::vector<Piece> matches, kept;
  for (const SplitStep& step : steps_) {
    next.clear();
    for (std::string_view piece : *out) {
      FindAll(piece, step.pattern, &found);
      matches.clear();
      size_t prev = 0;
      for (const auto& [s, e] : found) {
        if (prev != s) matches.push_back({prev, s, step.invert});
        matches.push_back({s, e, !step.invert});
        prev = e;
      }
      if (prev != piece.size()) matches.push_back({prev, piece.size(), step.invert});
      ApplyBehavior(matches, step.behavior, &kept);
      for (const Piece& k : kept) {
        if (!k.flag && k.end > k.start) next.push_back(piece.substr(k.start, k.end - k.start));
      }
    }
    out->swap(next);
  }
}

bool ParseByteToken(std::string_view token, uint8_t* byte) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return false;
  auto hex = [](char c, int* v) {
    if (c >= '0' && c <= '9') *v = c - '0';
    else if (c >= 'a' && c <= 'f') *v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') *v = c - 'A' + 10;
    else return false;
    return true;
  };
  int hi, lo;
  if (token[3] == '+') {  // Rust's from_str_radix accepts a leading '+'
    if (!hex(token[4], &lo)) return false;
    *byte = static_cast<uint8_t>(lo);
    return true;
  }
  if (!hex(token[3], &hi) || !hex(token[4], &lo)) return false;
  *byte = static_cast<uint8_t>(hi * 16 + lo);
  return true;
}

namespace {

void ByteFallbackStep(std::vector<std::string>* tokens) {
  std::vector<std::string> out;
  out.reserve(tokens->size());
  std::string bytes;
  auto flush = [&] {
    if (bytes.empty()) return;
    if (IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      // HF replaces every byte of an invalid group, not just the bad ones.
      for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    bytes.clear();
  };
  for (std::string& t : *tokens) {
    uint8_t b;
    if (ParseByteToken(t, &b)) {
      bytes.push_back(static_cast<char>(b));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  tokens->swap(out);
}

std::string StripToken(const std::string& token, char32_t content, size_t start, size_t stop) {
  std::vector<size_t> offsets;  // byte offset of each character, plus the end
  for (size_t i = 0; i < token.size();) {
    offsets.push_back(i);
    i += Utf8SeqLen(static_cast<unsigned char>(token[i]));
  }
  const size_t n = offsets.size();
  offsets.push_back(token.size());
  auto char_at = [&](size_t k) {
    char32_t cp = 0;
    DecodeUtf8(token, offsets[k], &cp);
    return cp;
  };
  size_t start_cut = 0;
  for (size_t k = 0; k < std::min(start, n); ++k) {
    if (char_at(k) != content) break;
    start_cut = k + 1;
  }
  size_t stop_cut = n;
  // HF panics when `stop` exceeds the token length; here the loop just stops at the start.
  for (size_t k = 0; k < std::min(stop, n); ++k) {
    const size_t index = n - k - 1;
    if (char_at(index) != content) break;
    stop_cut = index;
  }
  if (start_cut >= stop_cut) return std::string();
  return token.substr(offsets[start_cut], offsets[stop_cut] - offsets[start_cut]);
}

}  // namespace

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  for (const DecoderStep& step : steps_) {
    switch (step.kind) {
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens) {
          if (t.find(step.pattern) != std::string::npos) t = ReplaceAll(t, step.pattern, step.content);
        }
        break;
      case DecoderStep::Kind::kByteFallback:
        ByteFallbackStep(&tokens);
        break;
      case DecoderStep::Kind::kFuse: {
        std::string joined;
        for (const std::string& t : tokens) joined += t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case DecoderStep::Kind::kStrip: {
        char32_t c = 0;
        DecodeUtf8(step.content, 0, &c);
        for (std::string& t : tokens) t = StripToken(t, c, step.start, step.stop);
        break;
      }
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace gs
