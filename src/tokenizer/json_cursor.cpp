#include "tokenizer/json_cursor.h"

#include <algorithm>
#include <vector>

#include "tokenizer/unicode.h"

namespace gs {

JsonCursor::JsonCursor(std::string_view text, std::string source)
    : text_(text), source_(std::move(source)) {}

Error JsonCursor::ErrorHere(std::string_view message) const {
  const size_t end = std::min(pos_, text_.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < end; ++i) {
    if (text_[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return MakeError(source_, ": line ", line, ", column ", column, ": ", message);
}

char JsonCursor::Peek() {
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return c;
    ++pos_;
  }
  return '\0';
}

Status JsonCursor::Expect(char c) {
  if (Peek() != c) {
    if (pos_ >= text_.size()) return ErrorHere(StrCat("expected '", c, "' but the input ended"));
    return ErrorHere(StrCat("expected '", c, "'"));
  }
  ++pos_;
  return Ok();
}

Expected<bool> JsonCursor::NextKey(bool* first, std::string* key) {
  const char c = Peek();
  if (c == '}') {
    ++pos_;
    return false;
  }
  if (!*first) {
    if (c != ',') return ErrorHere("expected ',' or '}' in object");
    ++pos_;
    if (Peek() != '"') return ErrorHere("expected a string key after ','");
  } else if (c != '"') {
    return ErrorHere("expected a string key or '}'");
  }
  *first = false;
  GS_RETURN_IF_ERROR(ReadString(key));
  GS_RETURN_IF_ERROR(Expect(':'));
  return true;
}

Expected<bool> JsonCursor::NextElement(bool* first) {
  const char c = Peek();
  if (c == ']') {
    ++pos_;
    return false;
  }
  if (!*first) {
    if (c != ',') return ErrorHere("expected ',' or ']' in array");
    ++pos_;
    if (Peek() == ']') return ErrorHere("trailing ',' in array");
  } else if (c == '\0') {
    return ErrorHere("the input ended inside an array");
  }
  *first = false;
  return true;
}

Status JsonCursor::ReadHex4(uint32_t* out) {
  if (text_.size() - pos_ < 4) return ErrorHere("truncated \\u escape");
  uint32_t v = 0;
  for (int k = 0; k < 4; ++k) {
    const char h = text_[pos_ + k];
    v <<= 4;
    if (h >= '0' && h <= '9') {
      v |= h - '0';
    } else if (h >= 'a' && h <= 'f') {
      v |= h - 'a' + 10;
    } else if (h >= 'A' && h <= 'F') {
      v |= h - 'A' + 10;
    } else {
      return ErrorHere("bad hex digit in \\u escape");
    }
  }
  pos_ += 4;
  *out = v;
  return Ok();
}

Status JsonCursor::ReadString(std::string* out) {
  out->clear();
  if (Peek() != '"') return ErrorHere("expected a string");
  ++pos_;
  const size_t n = text_.size();
  while (true) {
    // Copy the run of plain bytes in one go; the file was validated as UTF-8 by the caller or is
    // checked here byte-wise for control characters only.
    size_t run = pos_;
    while (run < n) {
      const auto b = static_cast<unsigned char>(text_[run]);
      if (b == '"' || b == '\\' || b < 0x20) break;
      ++run;
    }
    out->append(text_.data() + pos_, run - pos_);
    pos_ = run;
    if (pos_ >= n) return ErrorHere("unterminated string");
    const char c = text_[pos_++];
    if (c == '"') break;
    if (c != '\\') {
      --pos_;
      return ErrorHere("control character inside a string");
    }
    if (pos_ >= n) return ErrorHere("unterminated escape");
    const char e = text_[pos_++];
    switch (e) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case '/': out->push_back('/'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        uint32_t cp;
        GS_RETURN_IF_ERROR(ReadHex4(&cp));
        if (cp >= 0xDC00 && cp <= 0xDFFF) return ErrorHere("lone low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (text_.size() - pos_ < 2 || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
            return ErrorHere("lone high surrogate in \\u escape");
          }
          pos_ += 2;
          uint32_t lo;
          GS_RETURN_IF_ERROR(ReadHex4(&lo));
          if (lo < 0xDC00 || lo > 0xDFFF) return ErrorHere("bad surrogate pair in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        AppendUtf8(cp, out);
        break;
      }
      default:
        --pos_;
        return ErrorHere("invalid escape in string");
    }
  }
  return Ok();
}

Status JsonCursor::ReadInt64(int64_t* out) {
  const char c = Peek();
  const size_t start = pos_;
  bool negative = false;
  if (c == '-') {
    negative = true;
    ++pos_;
  }
  if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
    pos_ = start;
    return ErrorHere("expected an integer");
  }
  uint64_t v = 0;
  size_t digits = 0;
  while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
    if (++digits > 18) return ErrorHere("integer too large");
    v = v * 10 + static_cast<uint64_t>(text_[pos_++] - '0');
  }
  if (digits > 1 && text_[start + (negative ? 1 : 0)] == '0') {
    return ErrorHere("leading zero in number");
  }
  if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
    return ErrorHere("expected an integer, found a fraction or exponent");
  }
  *out = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return Ok();
}

Status JsonCursor::SkipLiteral(std::string_view word) {
  if (text_.substr(pos_, word.size()) != word) return ErrorHere("invalid literal");
  pos_ += word.size();
  return Ok();
}

Status JsonCursor::ReadBool(bool* out) {
  const char c = Peek();
  if (c == 't') {
    *out = true;
    return SkipLiteral("true");
  }
  if (c == 'f') {
    *out = false;
    return SkipLiteral("false");
  }
  return ErrorHere("expected true or false");
}

bool JsonCursor::TryReadNull() {
  if (Peek() == 'n' && text_.substr(pos_, 4) == "null") {
    pos_ += 4;
    return true;
  }
  return false;
}

Status JsonCursor::SkipNumber() {
  const size_t start = pos_;
  if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
  auto digits = [&] {
    const size_t d = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    return pos_ - d;
  };
  const size_t int_digits = digits();
  if (int_digits == 0) return ErrorHere("invalid number");
  if (int_digits > 1 && text_[pos_ - int_digits] == '0') {
    pos_ = start;
    return ErrorHere("leading zero in number");
  }
  if (pos_ < text_.size() && text_[pos_] == '.') {
    ++pos_;
    if (digits() == 0) return ErrorHere("invalid number");
  }
  if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
    ++pos_;
    if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
    if (digits() == 0) return ErrorHere("invalid number");
  }
  return Ok();
}

Status JsonCursor::SkipValue() {
  // Iterative, so hostile nesting cannot overflow the stack; `closers` tracks open containers.
  std::vector<char> closers;
  std::vector<bool> firsts;
  std::string scratch;
  while (true) {
    const char c = Peek();
    switch (c) {
      case '{':
      case '[':
        if (closers.size() >= kMaxDepth) return ErrorHere("JSON nested too deeply");
        ++pos_;
        closers.push_back(c == '{' ? '}' : ']');
        firsts.push_back(true);
        break;
      case '"':
        GS_RETURN_IF_ERROR(ReadString(&scratch));
        break;
      case 't':
        GS_RETURN_IF_ERROR(SkipLiteral("true"));
        break;
      case 'f':
        GS_RETURN_IF_ERROR(SkipLiteral("false"));
        break;
      case 'n':
        GS_RETURN_IF_ERROR(SkipLiteral("null"));
        break;
      case '\0':
        return ErrorHere("expected a value but the input ended");
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          GS_RETURN_IF_ERROR(SkipNumber());
        } else {
          return ErrorHere("expected a value");
        }
    }
    // After a complete value (or an opened container), find the next value to read.
    while (!closers.empty()) {
      bool first = firsts.back();
      bool more;
      if (closers.back() == '}') {
        GS_ASSIGN_OR_RETURN(more, NextKey(&first, &scratch));
      } else {
        GS_ASSIGN_OR_RETURN(more, NextElement(&first));
      }
      firsts.back() = first;
      if (more) break;
      closers.pop_back();
      firsts.pop_back();
    }
    if (closers.empty()) return Ok();
  }
}

Status JsonCursor::RawValue(std::string_view* out) {
  Peek();
  const size_t start = pos_;
  GS_RETURN_IF_ERROR(SkipValue());
  *out = text_.substr(start, pos_ - start);
  return Ok();
}

Status JsonCursor::ExpectEnd() {
  if (Peek() != '\0' || pos_ < text_.size()) return ErrorHere("unexpected data after the JSON value");
  return Ok();
}

}  // namespace gs

