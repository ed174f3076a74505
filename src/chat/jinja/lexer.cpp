#include "chat/jinja/lexer.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "chat/jinja/error.h"
#include "chat/jinja/py_format.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {

const char* TokenTypeName(TokenType type) {
  switch (type) {
    case TokenType::kData: return "template data";
    case TokenType::kVariableBegin: return "begin of print statement";
    case TokenType::kVariableEnd: return "end of print statement";
    case TokenType::kBlockBegin: return "begin of statement block";
    case TokenType::kBlockEnd: return "end of statement block";
    case TokenType::kName: return "name";
    case TokenType::kString: return "string";
    case TokenType::kInteger: return "integer";
    case TokenType::kFloat: return "float";
    case TokenType::kOperator: return "operator";
    case TokenType::kEof: return "end of template";
  }
  return "token";
}

namespace {

// jinja2 joins the template's lines with "\n" (so \r\n and \r become \n) and, without
// keep_trailing_newline, drops one final newline.
std::string NormalizeNewlines(std::string_view src, bool keep_trailing_newline) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
      out.push_back('\n');
    } else {
      out.push_back(src[i]);
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Length in bytes of the UTF-8 sequence starting at s[i] (1 for invalid bytes).
size_t Utf8Len(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  return i + n <= s.size() ? n : 1;
}

char32_t CodePointAt(std::string_view s, size_t i, size_t* len) {
  *len = Utf8Len(s, i);
  std::u32string cp = DecodeUtf8(s.substr(i, *len));
  return cp.empty() ? 0xFFFD : cp[0];
}

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options)
      : src_(NormalizeNewlines(source, options.keep_trailing_newline)), opt_(options) {}

  std::vector<Token> Run() {
    while (pos_ < src_.size()) LexRoot();
    Token eof{TokenType::kEof, ""};
    SetPos(eof, src_.size());
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  enum class Tag { kNone, kRaw, kBlock, kVariable, kComment };

  void SetPos(Token& t, size_t pos) {
    // Positions only move forward, so the line count is kept incrementally.
    while (line_scan_ < pos && line_scan_ < src_.size()) {
      if (src_[line_scan_] == '\n') {
        ++line_;
        line_start_ = line_scan_ + 1;
      }
      ++line_scan_;
    }
    t.line = line_;
    t.col = static_cast<int>(pos - line_start_) + 1;
  }

  [[noreturn]] void Fail(size_t pos, const std::string& msg) {
    Token t{TokenType::kEof, ""};
    SetPos(t, pos);
    throw JinjaError(ErrorKind::kSyntax, msg, t.line, t.col);
  }

  bool At(size_t pos, std::string_view s) const {
    return src_.compare(pos, s.size(), s) == 0 && pos + s.size() <= src_.size();
  }

  // Python's \s at pos (Unicode whitespace); returns its byte length or 0.
  size_t SpaceAt(size_t pos) const {
    if (pos >= src_.size()) return 0;
    const unsigned char c = static_cast<unsigned char>(src_[pos]);
    if (c < 0x80) return (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F));
    size_t len;
    char32_t cp = CodePointAt(src_, pos, &len);
    return IsSpace(cp) ? len : 0;
  }

  size_t SkipSpaces(size_t pos) const {
    while (size_t n = SpaceAt(pos)) pos += n;
    return pos;
  }

  // Matches `{%(-|+|)\s*raw\s*(-%}\s*|%})` at pos; returns the end or npos.
  size_t MatchRawBegin(size_t pos, char* sign) const {
    if (!At(pos, "{%")) return std::string::npos;
    size_t p = pos + 2;
    *sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *sign = src_[p++];
    p = SkipSpaces(p);
    if (!At(p, "raw")) return std::string::npos;
    p = SkipSpaces(p + 3);
    if (At(p, "-%}")) return SkipSpaces(p + 3);
    if (At(p, "%}")) return p + 2;
    return std::string::npos;
  }

  // Finds the next tag start at or after pos, like the lazy `(.*?)(?:raw|{%|{{|{#)` regex.
  size_t FindTag(size_t pos, Tag* tag, char* sign, size_t* tag_end) const {
    for (size_t p = src_.find('{', pos); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 >= src_.size()) break;
      const char c = src_[p + 1];
      if (c != '%' && c != '{' && c != '#') continue;
      if (c == '%') {
        size_t raw_end = MatchRawBegin(p, sign);
        if (raw_end != std::string::npos) {
          *tag = Tag::kRaw;
          *tag_end = raw_end;
          return p;
        }
      }
      *tag = c == '%' ? Tag::kBlock : c == '{' ? Tag::kVariable : Tag::kComment;
      size_t q = p + 2;
      *sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) *sign = src_[q++];
      *tag_end = q;
      return p;
    }
    *tag = Tag::kNone;
    return std::string::npos;
  }

  // Whitespace control for the text in front of a tag (jinja2's OptionalLStrip).
  std::string StripText(std::string_view text, char sign, bool is_variable) const {
    if (sign == '-') {
      return PyStrip(text, false, true);
    }
    if (sign != '+' && opt_.lstrip_blocks && !is_variable) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
      if (l_pos > 0 || line_starting_) {
        bool only_blanks = true;
        for (size_t i = l_pos; i < text.size(); ++i) {
          if (text[i] != ' ' && text[i] != '\t') {
            only_blanks = false;
            break;
          }
        }
        if (only_blanks) return std::string(text.substr(0, l_pos));
      }
    }
    return std::string(text);
  }

  void EmitData(std::string text, size_t pos) {
    if (text.empty()) return;
    Token t{TokenType::kData, std::move(text)};
    SetPos(t, pos);
    tokens_.push_back(std::move(t));
  }

  void LexRoot() {
    Tag tag;
    char sign = 0;
    size_t tag_end = 0;
    const size_t start = FindTag(pos_, &tag, &sign, &tag_end);
    if (tag == Tag::kNone) {
      EmitData(src_.substr(pos_), pos_);
      pos_ = src_.size();
      return;
    }
    EmitData(StripText(std::string_view(src_).substr(pos_, start - pos_), sign,
                       tag == Tag::kVariable),
             pos_);
    line_starting_ = tag_end > start && src_[tag_end - 1] == '\n';
    switch (tag) {
      case Tag::kRaw: LexRaw(start, tag_end); break;
      case Tag::kComment: LexComment(start, tag_end); break;
      case Tag::kBlock:
      case Tag::kVariable: LexTag(start, tag_end, tag == Tag::kBlock); break;
      case Tag::kNone: break;
    }
  }

  // Block end: `+%}` | `-%}\s*` | `%}\n?` (the newline only with trim_blocks).
  size_t MatchBlockEnd(size_t p, std::string_view close) const {
    if (p < src_.size() && src_[p] == '+' && At(p + 1, close)) return p + 1 + close.size();
    if (p < src_.size() && src_[p] == '-' && At(p + 1, close)) {
      return SkipSpaces(p + 1 + close.size());
    }
    if (At(p, close)) {
      size_t e = p + close.size();
      if (opt_.trim_blocks && e < src_.size() && src_[e] == '\n') ++e;
      return e;
    }
    return std::string::npos;
  }

  void LexComment(size_t start, size_t p) {
    for (size_t q = src_.find("#}", p); q != std::string::npos; q = src_.find("#}", q + 1)) {
      // The lazy regex stops at the first "#}", or one character earlier for "-#}"/"+#}".
      size_t at = (q > p && (src_[q - 1] == '-' || src_[q - 1] == '+')) ? q - 1 : q;
      size_t end = MatchBlockEnd(at, "#}");
      pos_ = end;
      line_starting_ = end > 0 && src_[end - 1] == '\n';
      return;
    }
    Fail(start, "Missing end of comment tag");
  }

  void LexRaw(size_t start, size_t p) {
    // `(.*?)({%(-|+|)\s*endraw\s*(+%}|-%}\s*|%}\n?))`
    for (size_t q = src_.find("{%", p); q != std::string::npos; q = src_.find("{%", q + 1)) {
      size_t r = q + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) sign = src_[r++];
      r = SkipSpaces(r);
      if (!At(r, "endraw")) continue;
      r = SkipSpaces(r + 6);
      size_t end = MatchBlockEnd(r, "%}");
      if (end == std::string::npos) continue;
      EmitData(StripText(std::string_view(src_).substr(p, q - p), sign, false), p);
      pos_ = end;
      line_starting_ = src_[end - 1] == '\n';
      return;
    }
    Fail(start, "Missing end of raw directive");
  }

  void LexTag(size_t start, size_t p, bool is_block) {
    Token begin{is_block ? TokenType::kBlockBegin : TokenType::kVariableBegin, ""};
    SetPos(begin, start);
    tokens_.push_back(std::move(begin));
    std::vector<char> balance;
    while (true) {
      if (p >= src_.size()) {
        pos_ = p;
        return;  // the parser reports the missing end tag
      }
      if (balance.empty()) {
        size_t end = is_block ? MatchBlockEnd(p, "%}") : MatchVariableEnd(p);
        if (end != std::string::npos) {
          Token t{is_block ? TokenType::kBlockEnd : TokenType::kVariableEnd, ""};
          SetPos(t, p);
          tokens_.push_back(std::move(t));
          pos_ = end;
          line_starting_ = src_[end - 1] == '\n';
          return;
        }
      }
      if (size_t n = SpaceAt(p)) {
        p = SkipSpaces(p + n);
        continue;
      }
      p = LexOne(p, balance);
    }
  }

  size_t MatchVariableEnd(size_t p) const {
    if (p < src_.size() && src_[p] == '-' && At(p + 1, "}}")) return SkipSpaces(p + 3);
    if (At(p, "}}")) return p + 2;
    return std::string::npos;
  }

  // Digits with single underscores between them: `\d+(_\d+)*`. Returns the end or npos.
  size_t MatchDigits(size_t p) const {
    if (p >= src_.size() || !IsAsciiDigit(src_[p])) return std::string::npos;
    while (true) {
      while (p < src_.size() && IsAsciiDigit(src_[p])) ++p;
      if (p + 1 < src_.size() && src_[p] == '_' && IsAsciiDigit(src_[p + 1])) {
        ++p;
        continue;
      }
      return p;
    }
  }

  // jinja2's float_re: (?<!\.) digits ( (.digits)? e[+-]?digits | .digits ).
  size_t MatchFloat(size_t p) const {
    if (p > 0 && src_[p - 1] == '.') return std::string::npos;
    size_t q = MatchDigits(p);
    if (q == std::string::npos) return q;
    size_t frac_end = std::string::npos;
    if (q < src_.size() && src_[q] == '.') frac_end = MatchDigits(q + 1);
    size_t after = frac_end != std::string::npos ? frac_end : q;
    if (after < src_.size() && (src_[after] == 'e' || src_[after] == 'E')) {
      size_t e = after + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      size_t exp_end = MatchDigits(e);
      if (exp_end != std::string::npos) return exp_end;
    }
    return frac_end;
  }

  // jinja2's integer_re: 0b/0o/0x with optional underscores, [1-9](_?\d)*, or 0(_?0)*.
  size_t MatchInteger(size_t p, int* base) const {
    if (p >= src_.size() || !IsAsciiDigit(src_[p])) return std::string::npos;
    const char c = src_[p];
    if (c == '0' && p + 1 < src_.size()) {
      const char k = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[p + 1])));
      int b = k == 'b' ? 2 : k == 'o' ? 8 : k == 'x' ? 16 : 0;
      if (b) {
        auto ok = [b](char d) {
          if (b == 16) return std::isxdigit(static_cast<unsigned char>(d)) != 0;
          return d >= '0' && d < '0' + b;
        };
        size_t q = p + 2, end = std::string::npos;
        while (true) {
          size_t r = q;
          if (r < src_.size() && src_[r] == '_') ++r;
          if (r < src_.size() && ok(src_[r])) {
            q = r + 1;
            end = q;
          } else {
            break;
          }
        }
        if (end != std::string::npos) {
          *base = b;
          return end;
        }
      }
    }
    *base = 10;
    const char digit_kind = c;
    size_t q = p + 1;
    while (true) {
      size_t r = q;
      if (r < src_.size() && src_[r] == '_') ++r;
      if (r < src_.size() && IsAsciiDigit(src_[r]) && (digit_kind != '0' || src_[r] == '0')) {
        q = r + 1;
      } else {
        break;
      }
    }
    return q;
  }

  size_t LexOne(size_t p, std::vector<char>& balance) {
    Token t{TokenType::kOperator, ""};
    SetPos(t, p);
    if (size_t end = MatchFloat(p); end != std::string::npos) {
      std::string text;
      for (size_t i = p; i < end; ++i) {
        if (src_[i] != '_') text.push_back(src_[i]);
      }
      t.type = TokenType::kFloat;
      t.float_value = std::strtod(text.c_str(), nullptr);
      t.value = src_.substr(p, end - p);
      tokens_.push_back(std::move(t));
      return end;
    }
    int base = 10;
    if (size_t end = MatchInteger(p, &base); end != std::string::npos) {
      long long v = 0;
      bool overflow = false;
      t.value = src_.substr(p, end - p);
      if (!ParsePyInt(t.value, base == 10 ? 10 : 0, &v, &overflow) || overflow) {
        Fail(p, StrCat("integer literal ", t.value, " is out of range"));
      }
      t.type = TokenType::kInteger;
      t.int_value = v;
      tokens_.push_back(std::move(t));
      return end;
    }
    if (size_t end = MatchName(p); end != p) {
      t.type = TokenType::kName;
      t.value = src_.substr(p, end - p);
      tokens_.push_back(std::move(t));
      return end;
    }
    const char c = src_[p];
    if (c == '\'' || c == '"') {
      size_t end = LexString(p, &t.value);
      t.type = TokenType::kString;
      tokens_.push_back(std::move(t));
      return end;
    }
    static const char* kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%",
                                 "~",  "[",  "]",  "(",  ")",  "{",  "}", "<", ">", "=", ".",
                                 ":",  "|",  ",",  ";"};
    for (const char* op : kOps) {
      if (!At(p, op)) continue;
      t.value = op;
      CheckBalance(p, t.value, balance);
      const size_t len = t.value.size();
      tokens_.push_back(std::move(t));
      return p + len;
    }
    size_t len;
    CodePointAt(src_, p, &len);
    Fail(p, StrCat("unexpected char ", StringRepr(src_.substr(p, len)), " at ", p));
  }

  void CheckBalance(size_t p, const std::string& op, std::vector<char>& balance) {
    if (op == "{" || op == "[" || op == "(") {
      balance.push_back(op == "{" ? '}' : op == "[" ? ']' : ')');
    } else if (op == "}" || op == "]" || op == ")") {
      if (balance.empty()) Fail(p, StrCat("unexpected '", op, "'"));
      const char expected = balance.back();
      balance.pop_back();
      if (expected != op[0]) {
        Fail(p, StrCat("unexpected '", op, "', expected '", std::string(1, expected), "'"));
      }
    }
  }

  // Identifier characters: ASCII letters/digits/_ and any Unicode \w character.
  size_t MatchName(size_t p) const {
    size_t q = p;
    while (q < src_.size()) {
      const unsigned char c = static_cast<unsigned char>(src_[q]);
      if (c < 0x80) {
        if (std::isalnum(c) || c == '_') {
          ++q;
          continue;
        }
        break;
      }
      size_t len;
      char32_t cp = CodePointAt(src_, q, &len);
      if (!IsWordChar(cp)) break;
      q += len;
    }
    return q;
  }

  // A quoted literal decoded like Python's "unicode-escape" codec (after jinja2 turned every
  // non-ASCII character into a backslash escape, which is why "\é" yields the text "\xe9").
  size_t LexString(size_t p, std::string* out) {
    const char quote = src_[p];
    size_t q = p + 1;
    std::string raw;
    while (true) {
      if (q >= src_.size()) Fail(p, StrCat("unexpected char ", StringRepr(std::string(1, quote))));
      if (src_[q] == quote) break;
      if (src_[q] == '\\' && q + 1 < src_.size()) {
        raw.push_back(src_[q]);
        raw.push_back(src_[q + 1]);
        q += 2;
        continue;
      }
      raw.push_back(src_[q++]);
    }
    *out = DecodeEscapes(raw, p);
    return q + 1;
  }

  std::string DecodeEscapes(const std::string& s, size_t pos) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\' || i + 1 >= s.size()) {
        out.push_back(s[i]);
        continue;
      }
      const char c = s[++i];
      switch (c) {
        case '\n': break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
          uint32_t v = 0;
          for (size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + k]))) {
              Fail(pos, StrCat("truncated \\", std::string(1, c), " escape in string literal"));
            }
            const char d = s[i + k];
            v = v * 16 + (IsAsciiDigit(d) ? d - '0' : std::tolower(d) - 'a' + 10);
          }
          if (v > 0x10FFFF) Fail(pos, "illegal Unicode character in string literal");
          AppendUtf8(out, v);
          i += n;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            uint32_t v = c - '0';
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) {
              v = v * 8 + (s[++i] - '0');
            }
            AppendUtf8(out, v);
          } else if (static_cast<unsigned char>(c) >= 0x80) {
            // Backslash before a non-ASCII character: Python saw "\\" + "xe9".
            size_t len;
            char32_t cp = CodePointAt(s, i, &len);
            char buf[16];
            std::snprintf(buf, sizeof(buf), cp <= 0xFF ? "\\x%02x" : cp <= 0xFFFF ? "\\u%04x"
                                                                                    : "\\U%08x",
                          static_cast<unsigned>(cp));
            out += buf;
            i += len - 1;
          } else if (c == 'N') {
            Fail(pos, "\\N{...} escapes are not supported in string literals");
          } else {
            out.push_back('\\');
            out.push_back(c);
          }
      }
    }
    return out;
  }

  std::string src_;
  LexerOptions opt_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
  int line_ = 1;
  size_t line_start_ = 0;
  size_t line_scan_ = 0;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).Run();
}

}  // namespace gs::jinja
