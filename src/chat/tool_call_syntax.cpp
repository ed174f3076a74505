#include "chat/tool_call_syntax.h"

#include <utility>

namespace gs {
namespace {

constexpr std::string_view kCallPrefix = "call:";
constexpr std::string_view kStringDelim = "<|\"|>";
constexpr std::string_view kCallClose = "<tool_call|>";
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxBareBytes = 400;  // longest plausible number literal

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

bool IsStructural(char c) {
  return c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The JSON spelling of a bare literal, or empty if it is none we accept.
std::string_view LiteralJson(std::string_view word) {
  if (word == "true" || word == "True") return "true";
  if (word == "false" || word == "False") return "false";
  std::string lower(word);
  for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (lower == "null" || lower == "none" || lower == "nil") return "null";
  return {};
}

}  // namespace

bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && IsDigit(s[i])) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (i >= n || !IsDigit(s[i])) return false;
    while (i < n && IsDigit(s[i])) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (i >= n || !IsDigit(s[i])) return false;
    while (i < n && IsDigit(s[i])) ++i;
  }
  return i == n;
}

void AppendJsonEscaped(std::string_view bytes, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : bytes) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
}

GemmaCallSyntax::Step GemmaCallSyntax::Fail(std::string why) {
  state_ = State::kError;
  error_ = std::move(why);
  return Step::kError;
}

// A byte-at-a-time UTF-8 validator (RFC 3629: no overlongs, surrogates or code points > U+10FFFF).
bool GemmaCallSyntax::Utf8Accept(uint8_t b) {
  if (utf8_need_ > 0) {
    if (b < utf8_lo_ || b > utf8_hi_) return false;
    --utf8_need_;
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xBF;
    return true;
  }
  if (b < 0x80) return true;
  if (b >= 0xC2 && b <= 0xDF) {
    utf8_need_ = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    utf8_need_ = 2;
    if (b == 0xE0) utf8_lo_ = 0xA0;
    if (b == 0xED) utf8_hi_ = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    utf8_need_ = 3;
    if (b == 0xF0) utf8_lo_ = 0x90;
    if (b == 0xF4) utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  return true;
}

GemmaCallSyntax::Step GemmaCallSyntax::OpenContainer(bool is_object) {
  if (static_cast<int>(stack_.size()) >= max_depth_) return Fail("arguments nested too deeply");
  stack_.push_back({is_object, false});
  json_ += is_object ? '{' : '[';
  state_ = is_object ? State::kObjectOpen : State::kArrayOpen;
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::CloseContainer(bool is_object) {
  if (stack_.empty() || stack_.back().is_object != is_object) {
    return Fail(is_object ? "'}' does not close an object" : "']' does not close an array");
  }
  stack_.pop_back();
  json_ += is_object ? '}' : ']';
  state_ = stack_.empty() ? State::kEndMarker : State::kAfterValue;
  match_ = 0;
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::EmitKey() {
  Frame& frame = stack_.back();
  if (frame.has_items) json_ += ", ";
  frame.has_items = true;
  json_ += '"';
  AppendJsonEscaped(key_, json_);
  json_ += "\": ";
  key_.clear();
  state_ = State::kValueStart;
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::OnKeyStart(char c) {
  if (c == '<') {
    state_ = State::kQuotedKeyOpen;
    match_ = 1;
    return Step::kMore;
  }
  if (c == ':') return EmitKey();  // empty key, as `{"": 1}` renders
  if (IsStructural(c)) return Fail(std::string("expected a key, got '") + c + "'");
  state_ = State::kBareKey;
  if (!Utf8Accept(static_cast<uint8_t>(c))) return Fail("key is not valid UTF-8");
  key_ += c;
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::OnValueStart(char c) {
  if (IsSpace(c)) return Step::kMore;
  if (c == '}' || c == ']' || c == ',' || c == ':') {
    return Fail(std::string("expected a value, got '") + c + "'");
  }
  Frame& frame = stack_.back();
  if (!frame.is_object) {  // object members got their separator with the key
    if (frame.has_items) json_ += ", ";
    frame.has_items = true;
  }
  if (c == '{') return OpenContainer(true);
  if (c == '[') return OpenContainer(false);
  if (c == '<') {
    state_ = State::kStringOpen;
    match_ = 1;
    json_ += '"';
    return Step::kMore;
  }
  state_ = State::kBare;
  bare_.assign(1, c);
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::FinishBare() {
  std::string_view literal = LiteralJson(bare_);
  if (literal.empty()) {
    if (!IsJsonNumber(bare_)) return Fail("'" + bare_ + "' is not a number, boolean or null");
    literal = bare_;
  }
  json_ += literal;
  bare_.clear();
  state_ = State::kAfterValue;
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::OnAfterValue(char c) {
  if (IsSpace(c)) return Step::kMore;
  if (c == ',') {
    state_ = stack_.back().is_object ? State::kKeyStart : State::kValueStart;
    return Step::kMore;
  }
  if (c == '}') return CloseContainer(true);
  if (c == ']') return CloseContainer(false);
  return Fail(std::string("expected ',' or a closing bracket, got '") + c + "'");
}

// Inside a key or string: everything up to the closing `<|"|>` is text. A partial delimiter that
// breaks off (e.g. `<|x`) was text after all.
GemmaCallSyntax::Step GemmaCallSyntax::OnStringByte(char c, bool is_key) {
  if (match_ > 0) {
    if (c == kStringDelim[match_]) {
      if (++match_ < kStringDelim.size()) return Step::kMore;
      match_ = 0;
      if (utf8_need_ != 0) return Fail("string ends inside a UTF-8 sequence");
      if (is_key) {
        state_ = State::kAfterKey;
      } else {
        json_ += '"';
        state_ = State::kAfterValue;
      }
      return Step::kMore;
    }
    const std::string_view literal = kStringDelim.substr(0, match_);
    match_ = 0;
    for (char l : literal) {
      if (!Utf8Accept(static_cast<uint8_t>(l))) return Fail("string is not valid UTF-8");
    }
    if (is_key) {
      key_ += literal;
    } else {
      AppendJsonEscaped(literal, json_);
    }
  }
  if (c == '<') {
    match_ = 1;
    return Step::kMore;
  }
  if (!Utf8Accept(static_cast<uint8_t>(c))) return Fail("string is not valid UTF-8");
  if (is_key) {
    key_ += c;
  } else {
    AppendJsonEscaped(std::string_view(&c, 1), json_);
  }
  return Step::kMore;
}

GemmaCallSyntax::Step GemmaCallSyntax::Push(char c) {
  switch (state_) {
    case State::kPrefix:
      if (c != kCallPrefix[match_]) return Fail("call does not start with 'call:'");
      if (++match_ == kCallPrefix.size()) {
        state_ = State::kName;
        match_ = 0;
      }
      return Step::kMore;
    case State::kName:
      if (c == '{') {
        if (name_.empty()) return Fail("empty function name");
        name_complete_ = true;
        return OpenContainer(true);
      }
      if (!IsNameChar(c)) return Fail(std::string("bad byte in function name: '") + c + "'");
      if (name_.size() >= kMaxNameBytes) return Fail("function name too long");
      name_ += c;
      return Step::kMore;
    case State::kObjectOpen:
      if (IsSpace(c)) return Step::kMore;
      if (c == '}') return CloseContainer(true);
      return OnKeyStart(c);
    case State::kKeyStart:
      if (IsSpace(c)) return Step::kMore;
      return OnKeyStart(c);
    case State::kBareKey:
      if (c == ':') {
        if (utf8_need_ != 0) return Fail("key ends inside a UTF-8 sequence");
        while (!key_.empty() && IsSpace(key_.back())) key_.pop_back();
        return EmitKey();
      }
      if (IsStructural(c) || c == '<') return Fail(std::string("bad byte in key: '") + c + "'");
      if (!Utf8Accept(static_cast<uint8_t>(c))) return Fail("key is not valid UTF-8");
      key_ += c;
      return Step::kMore;
    case State::kQuotedKeyOpen:
    case State::kStringOpen:
      if (c != kStringDelim[match_]) return Fail("'<' that does not open a <|\"|> string");
      if (++match_ == kStringDelim.size()) {
        match_ = 0;
        state_ = state_ == State::kQuotedKeyOpen ? State::kQuotedKey : State::kString;
      }
      return Step::kMore;
    case State::kQuotedKey:
      return OnStringByte(c, /*is_key=*/true);
    case State::kAfterKey:
      if (IsSpace(c)) return Step::kMore;
      if (c == ':') return EmitKey();
      return Fail("expected ':' after a key");
    case State::kValueStart:
      return OnValueStart(c);
    case State::kArrayOpen:
      if (IsSpace(c)) return Step::kMore;
      if (c == ']') return CloseContainer(false);
      return OnValueStart(c);
    case State::kString:
      return OnStringByte(c, /*is_key=*/false);
    case State::kBare:
      if (IsSpace(c) || c == ',' || c == '}' || c == ']') {
        if (FinishBare() == Step::kError) return Step::kError;
        return OnAfterValue(c);
      }
      if (c == '<' || c == '{' || c == '[' || c == ':' || bare_.size() >= kMaxBareBytes) {
        return Fail("bad value '" + bare_ + "'");
      }
      bare_ += c;
      return Step::kMore;
    case State::kAfterValue:
      return OnAfterValue(c);
    case State::kEndMarker:
      if (match_ == 0 && IsSpace(c)) return Step::kMore;
      if (c != kCallClose[match_]) return Fail("arguments not followed by <tool_call|>");
      if (++match_ == kCallClose.size()) {
        state_ = State::kDone;
        return Step::kDone;
      }
      return Step::kMore;
    case State::kDone:
    case State::kError:
      return Fail("fed after the call ended");
  }
  return Fail("unreachable");
}

}  // namespace gs
