#include "chat/jinja/py_format.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <system_error>

#include "chat/jinja/unicode.h"
#include "chat/jinja/value.h"
#include "util/str.h"

namespace gs::jinja {

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then CPython's layout rule: fixed notation when the decimal
  // exponent is in [-4, 16), exponent notation otherwise.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  const int exponent = std::atoi(sci.c_str() + e_pos + 1);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int decpt = exponent + 1;
  const int n = static_cast<int>(digits.size());
  std::string out;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out = StrCat("0.", std::string(-decpt, '0'), digits);
    } else if (decpt >= n) {
      out = digits + std::string(decpt - n, '0') + ".0";
    } else {
      out = StrCat(digits.substr(0, decpt), ".", digits.substr(decpt));
    }
  } else {
    out = digits.substr(0, 1);
    if (n > 1) out += StrCat(".", digits.substr(1));
    const int e = decpt - 1;
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    out += ebuf;
  }
  return sign + out;
}

static void AppendHex(std::string& out, const char* prefix, uint32_t v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%s%0*x", prefix, width, v);
  out += buf;
}

std::string StringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : DecodeUtf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == U'\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == U'\t') {
      out += "\\t";
    } else if (c == U'\n') {
      out += "\\n";
    } else if (c == U'\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      AppendHex(out, "\\x", c, 2);
    } else if (c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else if (IsPrintable(c)) {
      AppendUtf8(out, c);
    } else if (c <= 0xFF) {
      AppendHex(out, "\\x", c, 2);
    } else if (c <= 0xFFFF) {
      AppendHex(out, "\\u", c, 4);
    } else {
      AppendHex(out, "\\U", c, 8);
    }
  }
  out.push_back(quote);
  return out;
}

// Removes Python's digit-group underscores; false when one is not between two digits.
static bool StripUnderscores(std::string_view s, std::string* out, int base) {
  auto is_digit = [base](char c) {
    if (base <= 10) return c >= '0' && c < '0' + base;
    return (c >= '0' && c <= '9') || (c >= 'a' && c < 'a' + base - 10) ||
           (c >= 'A' && c < 'A' + base - 10);
  };
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 >= s.size() || !is_digit(s[i - 1]) || !is_digit(s[i + 1])) return false;
      continue;
    }
    out->push_back(s[i]);
  }
  return true;
}

bool ParsePyFloat(std::string_view text, double* out) {
  const std::string stripped = PyStrip(text, true, true);
  std::string_view s = stripped;
  std::string body(s);
  std::string lower = PyLower(body);
  std::string_view l = lower;
  bool neg = false;
  if (!l.empty() && (l[0] == '+' || l[0] == '-')) {
    neg = l[0] == '-';
    l.remove_prefix(1);
  }
  if (l == "inf" || l == "infinity") {
    *out = neg ? -INFINITY : INFINITY;
    return true;
  }
  if (l == "nan") {
    *out = NAN;
    return true;
  }
  // Validate the Python float grammar before handing the text to strtod.
  std::string clean;
  if (!StripUnderscores(s, &clean, 10)) return false;
  size_t i = 0;
  if (i < clean.size() && (clean[i] == '+' || clean[i] == '-')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < clean.size() && std::isdigit(static_cast<unsigned char>(clean[i]))) ++i, ++int_digits;
  if (i < clean.size() && clean[i] == '.') {
    ++i;
    while (i < clean.size() && std::isdigit(static_cast<unsigned char>(clean[i]))) {
      ++i, ++frac_digits;
    }
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < clean.size() && (clean[i] == 'e' || clean[i] == 'E')) {
    ++i;
    if (i < clean.size() && (clean[i] == '+' || clean[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < clean.size() && std::isdigit(static_cast<unsigned char>(clean[i]))) {
      ++i, ++exp_digits;
    }
    if (exp_digits == 0) return false;
  }
  if (i != clean.size()) return false;
  *out = std::strtod(clean.c_str(), nullptr);
  return true;
}

bool ParsePyInt(std::string_view text, int base, long long* out, bool* overflow) {
  *overflow = false;
  const std::string stripped = PyStrip(text, true, true);
  std::string_view s = stripped;
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  auto has_prefix = [&](char p) {
    return s.size() >= 2 && s[0] == '0' && (s[1] == p || s[1] == p - 32);
  };
  const bool explicit_base = base != 0;
  if (base == 0) {
    base = has_prefix('x') ? 16 : has_prefix('o') ? 8 : has_prefix('b') ? 2 : 10;
  }
  if ((base == 16 && has_prefix('x')) || (base == 8 && has_prefix('o')) ||
      (base == 2 && has_prefix('b'))) {
    s.remove_prefix(2);
    if (!s.empty() && s[0] == '_') s.remove_prefix(1);  // "0x_1f" is valid
  } else if (!explicit_base && base == 10 && s.size() > 1 && s[0] == '0') {
    // int("010", 0) is a ValueError; only zeros may have leading zeros.
    for (char c : s) {
      if (c != '0' && c != '_') return false;
    }
  }
  std::string clean;
  if (s.empty() || !StripUnderscores(s, &clean, base) || clean.empty()) return false;
  unsigned long long value = 0;
  for (char c : clean) {
    int digit = (c >= '0' && c <= '9') ? c - '0'
                : (c >= 'a' && c <= 'z') ? c - 'a' + 10
                : (c >= 'A' && c <= 'Z') ? c - 'A' + 10
                                         : 99;
    if (digit >= base) return false;
    if (value > (std::numeric_limits<unsigned long long>::max() - digit) / base) {
      *overflow = true;
      return true;
    }
    value = value * base + digit;
  }
  if (value > static_cast<unsigned long long>(std::numeric_limits<long long>::max()) + neg) {
    *overflow = true;
    return true;
  }
  *out = neg ? static_cast<long long>(0 - value) : static_cast<long long>(value);
  return true;
}

// ---- json.dumps ----

namespace {

void JsonString(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : DecodeUtf8(s)) {
    switch (c) {
      case U'"': out += "\\\""; continue;
      case U'\\': out += "\\\\"; continue;
      case U'\n': out += "\\n"; continue;
      case U'\r': out += "\\r"; continue;
      case U'\t': out += "\\t"; continue;
      case U'\b': out += "\\b"; continue;
      case U'\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c > 0x7E)) {
      if (c > 0xFFFF) {
        const uint32_t v = c - 0x10000;
        AppendHex(out, "\\u", 0xD800 | (v >> 10), 4);
        AppendHex(out, "\\u", 0xDC00 | (v & 0x3FF), 4);
      } else {
        AppendHex(out, "\\u", c, 4);
      }
    } else {
      AppendUtf8(out, c);
    }
  }
  out.push_back('"');
}

std::string JsonFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return FloatRepr(d);
}

[[noreturn]] void NotSerializable(const Value& v) {
  Throw(ErrorKind::kType, StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonOptions& o) : o_(o) {
    item_sep_ = o.has_separators ? o.item_separator : (o.has_indent ? "," : ", ");
    key_sep_ = o.has_separators ? o.key_separator : ": ";
  }

  void Write(std::string& out, const Value& v, int level) {
    if (level > 1000) Throw(ErrorKind::kLimit, "json.dumps: nesting too deep");
    switch (v.type()) {
      case ValueType::kNone: out += "null"; return;
      case ValueType::kBool: out += v.as_bool() ? "true" : "false"; return;
      case ValueType::kInt: out += std::to_string(v.as_int()); return;
      case ValueType::kFloat: out += JsonFloat(v.as_float()); return;
      case ValueType::kString: JsonString(out, v.str(), o_.ensure_ascii); return;
      case ValueType::kList:
        if (!v.is_sequence_list()) NotSerializable(v);
        WriteList(out, v.list(), level);
        return;
      case ValueType::kDict: WriteDict(out, v.dict(), level); return;
      default: NotSerializable(v);
    }
  }

 private:
  void Newline(std::string& out, int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += o_.indent;
  }

  void WriteList(std::string& out, const ValueList& items, int level) {
    if (items.empty()) {
      out += "[]";
      return;
    }
    out.push_back('[');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += item_sep_;
      if (o_.has_indent) Newline(out, level + 1);
      Write(out, items[i], level + 1);
    }
    if (o_.has_indent) Newline(out, level);
    out.push_back(']');
  }

  static std::string KeyText(const Value& k) {
    switch (k.type()) {
      case ValueType::kString: return k.str();
      case ValueType::kNone: return "null";
      case ValueType::kBool: return k.as_bool() ? "true" : "false";
      case ValueType::kInt: return std::to_string(k.as_int());
      case ValueType::kFloat: return JsonFloat(k.as_float());
      default:
        Throw(ErrorKind::kType, StrCat("keys must be str, int, float, bool or None, not ",
                                       TypeName(k)));
    }
  }

  void WriteDict(std::string& out, const Dict& d, int level) {
    if (d.size() == 0) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<Value, Value>*> items;
    for (const auto& kv : d.items()) items.push_back(&kv);
    if (o_.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return Less(a->first, b->first); });
    }
    out.push_back('{');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += item_sep_;
      if (o_.has_indent) Newline(out, level + 1);
      JsonString(out, KeyText(items[i]->first), o_.ensure_ascii);
      out += key_sep_;
      Write(out, items[i]->second, level + 1);
    }
    if (o_.has_indent) Newline(out, level);
    out.push_back('}');
  }

  const JsonOptions& o_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

std::string ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  JsonWriter(options).Write(out, v, 0);
  return out;
}

}  // namespace gs::jinja
