// Python's text forms of numbers and strings: repr(float) (shortest round-trip, Python's
// fixed/exponent switch), repr(str) (quote choice and escapes), and json.dumps.
#pragma once

#include <string>
#include <string_view>

namespace gs::jinja {

class Value;

std::string FloatRepr(double d);
std::string StringRepr(std::string_view s);

// Python float() parsing of a string (surrounding whitespace, underscores, inf/nan);
// returns false when Python would raise ValueError.
bool ParsePyFloat(std::string_view s, double* out);
// Python int(s, base) parsing; returns false on ValueError; sets *overflow past int64.
bool ParsePyInt(std::string_view s, int base, long long* out, bool* overflow);

struct JsonOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;          // used when has_indent
  bool has_separators = false;
  std::string item_separator;  // used when has_separators
  std::string key_separator;
  bool sort_keys = false;
};

// json.dumps(value, ...) as CPython writes it; raises TypeError for values JSON cannot hold.
std::string ToJson(const Value& v, const JsonOptions& options);

}  // namespace gs::jinja
