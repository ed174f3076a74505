// Python methods of str, dict, list and tuple that templates call (message.get(...),
// text.split(...), ...). The mutating list/dict methods exist but are refused, as in jinja2's
// ImmutableSandboxedEnvironment.
#include <algorithm>
#include <set>

#include "chat/jinja/args.h"
#include "chat/jinja/objects.h"
#include "chat/jinja/py_format.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

const std::set<std::string_view>& StrMethods() {
  static const std::set<std::string_view> kNames = {
      "strip",  "lstrip",     "rstrip",  "split",      "rsplit",    "startswith", "endswith",
      "replace", "upper",     "lower",   "title",      "capitalize", "find",      "rfind",
      "index",  "rindex",     "count",   "join",       "splitlines", "isdigit",   "isalpha",
      "isalnum", "isspace",   "islower", "isupper",    "isdecimal", "zfill",      "ljust",
      "rjust",  "center",     "partition", "rpartition", "swapcase", "casefold",  "istitle"};
  return kNames;
}

std::u32string U32(const Value& v) { return DecodeUtf8(v.str()); }
Value Str(std::u32string_view s) { return Value::String(EncodeUtf8(s)); }

const std::string& RequireStr(const Value& v, const char* what) {
  if (!v.is_string()) {
    Throw(ErrorKind::kType, StrCat(what, " must be str, not ", TypeName(v)));
  }
  return v.str();
}

// Python slice-style clamping of optional start/end arguments (code point indices).
void ClampRange(const ArgBinder& b, size_t first_index, int64_t n, int64_t* start, int64_t* end) {
  *start = 0;
  *end = n;
  auto norm = [n](int64_t i) { return i < 0 ? std::max<int64_t>(0, i + n) : std::min(i, n); };
  if (const Value* s = b.Get(first_index); s && !s->is_none()) *start = norm(s->to_int());
  if (const Value* e = b.Get(first_index + 1); e && !e->is_none()) *end = norm(e->to_int());
}

Value Split(const Value& self, const CallArgs& args, bool from_right) {
  ArgBinder b(from_right ? "rsplit" : "split", args, {"sep", "maxsplit"});
  const Value sep = b.GetOr(0, Value::None());
  int64_t maxsplit = b.GetOr(1, Value::Int(-1)).to_int();
  const std::u32string s = U32(self);
  std::vector<std::u32string> parts;
  if (sep.is_none()) {
    // Whitespace runs separate fields; leading/trailing whitespace yields no empty fields.
    std::vector<std::pair<size_t, size_t>> fields;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsSpace(s[i])) ++i;
      if (i >= s.size()) break;
      size_t j = i;
      while (j < s.size() && !IsSpace(s[j])) ++j;
      fields.emplace_back(i, j);
      i = j;
    }
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) >= fields.size()) {
      for (auto [a, z] : fields) parts.push_back(s.substr(a, z - a));
    } else if (!from_right) {
      for (int64_t k = 0; k < maxsplit; ++k) {
        parts.push_back(s.substr(fields[k].first, fields[k].second - fields[k].first));
      }
      size_t rest = fields[maxsplit].first;
      size_t end = s.size();
      while (end > rest && IsSpace(s[end - 1])) --end;
      parts.push_back(s.substr(rest, end - rest));
    } else {
      const size_t first_kept = fields.size() - maxsplit;
      size_t begin = 0;
      while (begin < s.size() && IsSpace(s[begin])) ++begin;
      parts.push_back(s.substr(begin, fields[first_kept - 1].second - begin));
      for (size_t k = first_kept; k < fields.size(); ++k) {
        parts.push_back(s.substr(fields[k].first, fields[k].second - fields[k].first));
      }
    }
  } else {
    const std::u32string d = DecodeUtf8(RequireStr(sep, "separator"));
    if (d.empty()) Throw(ErrorKind::kValue, "empty separator");
    if (!from_right) {
      size_t start = 0;
      while (maxsplit != 0) {
        size_t hit = s.find(d, start);
        if (hit == std::u32string::npos) break;
        parts.push_back(s.substr(start, hit - start));
        start = hit + d.size();
        --maxsplit;
      }
      parts.push_back(s.substr(start));
    } else {
      size_t end = s.size();
      std::vector<std::u32string> rev;
      while (maxsplit != 0 && end >= d.size()) {
        size_t hit = s.rfind(d, end - d.size());
        if (hit == std::u32string::npos) break;
        rev.push_back(s.substr(hit + d.size(), end - hit - d.size()));
        end = hit;
        --maxsplit;
      }
      rev.push_back(s.substr(0, end));
      parts.assign(rev.rbegin(), rev.rend());
    }
  }
  ValueList out;
  for (const auto& p : parts) out.push_back(Str(p));
  return Value::List(std::move(out));
}

Value Strip(const Value& self, const CallArgs& args, const char* name, bool left, bool right) {
  ArgBinder b(name, args, {"chars"});
  const Value chars = b.GetOr(0, Value::None());
  if (chars.is_none()) return Value::String(PyStrip(self.str(), left, right));
  return Value::String(PyStripChars(self.str(), RequireStr(chars, "strip arg"), left, right));
}

Value StartsEnds(const Value& self, const CallArgs& args, bool ends) {
  ArgBinder b(ends ? "endswith" : "startswith", args, {"prefix", "start", "end"});
  const Value& what = b.Require(0);
  const std::u32string s = U32(self);
  int64_t start, end;
  ClampRange(b, 1, static_cast<int64_t>(s.size()), &start, &end);
  ValueList options = what.is_list() && what.list_kind() == ListKind::kTuple
                          ? what.list()
                          : ValueList{what};
  for (const Value& opt : options) {
    if (!opt.is_string()) {
      Throw(ErrorKind::kType, StrCat(ends ? "endswith" : "startswith",
                                     " first arg must be str or a tuple of str, not ",
                                     TypeName(opt)));
    }
    const std::u32string p = DecodeUtf8(opt.str());
    if (start > end || static_cast<int64_t>(p.size()) > end - start) continue;
    const size_t at = ends ? static_cast<size_t>(end) - p.size() : static_cast<size_t>(start);
    if (s.compare(at, p.size(), p) == 0) return Value::Bool(true);
  }
  return Value::Bool(false);
}

Value Replace(Interpreter& interp, const Value& self, const CallArgs& args) {
  ArgBinder b("replace", args, {"old", "new", "count"});
  const std::u32string s = U32(self);
  const std::u32string old = DecodeUtf8(RequireStr(b.Require(0), "replace() argument 1"));
  const std::u32string repl = DecodeUtf8(RequireStr(b.Require(1), "replace() argument 2"));
  int64_t count = b.GetOr(2, Value::Int(-1)).to_int();
  std::u32string out;
  if (old.empty()) {
    // Python inserts `new` before every character and at the end.
    for (size_t i = 0; i <= s.size(); ++i) {
      if (count != 0) {
        out += repl;
        if (count > 0) --count;
      }
      if (i < s.size()) out.push_back(s[i]);
      interp.CheckSize(out.size());
    }
    return Str(out);
  }
  size_t pos = 0;
  while (count != 0) {
    size_t hit = s.find(old, pos);
    if (hit == std::u32string::npos) break;
    out.append(s, pos, hit - pos);
    out += repl;
    interp.CheckSize(out.size());
    pos = hit + old.size();
    if (count > 0) --count;
  }
  out.append(s, pos);
  return Str(out);
}

Value Find(const Value& self, const CallArgs& args, const char* name, bool reverse, bool raise) {
  ArgBinder b(name, args, {"sub", "start", "end"});
  const std::u32string s = U32(self);
  const std::u32string sub = DecodeUtf8(RequireStr(b.Require(0), "must be str"));
  int64_t start, end;
  ClampRange(b, 1, static_cast<int64_t>(s.size()), &start, &end);
  int64_t found = -1;
  if (start <= end && static_cast<int64_t>(sub.size()) <= end - start) {
    const std::u32string_view window = std::u32string_view(s).substr(start, end - start);
    const size_t hit = reverse ? window.rfind(sub) : window.find(sub);
    if (hit != std::u32string_view::npos) found = start + static_cast<int64_t>(hit);
  }
  if (found < 0 && raise) Throw(ErrorKind::kValue, "substring not found");
  return Value::Int(found);
}

Value Count(const Value& self, const CallArgs& args) {
  ArgBinder b("count", args, {"sub", "start", "end"});
  const std::u32string s = U32(self);
  const std::u32string sub = DecodeUtf8(RequireStr(b.Require(0), "must be str"));
  int64_t start, end;
  ClampRange(b, 1, static_cast<int64_t>(s.size()), &start, &end);
  if (start > end) return Value::Int(0);
  if (sub.empty()) return Value::Int(end - start + 1);
  int64_t n = 0;
  const std::u32string_view window = std::u32string_view(s).substr(start, end - start);
  for (size_t pos = window.find(sub); pos != std::u32string_view::npos;
       pos = window.find(sub, pos + sub.size())) {
    ++n;
  }
  return Value::Int(n);
}

Value Join(Interpreter& interp, const Value& self, const CallArgs& args) {
  ArgBinder b("join", args, {"iterable"});
  std::string out;
  size_t i = 0;
  for (const Value& item : Iterate(b.Require(0))) {
    if (!item.is_string()) {
      Throw(ErrorKind::kType, StrCat("sequence item ", i, ": expected str instance, ",
                                     TypeName(item), " found"));
    }
    if (i++) out += self.str();
    out += item.str();
    interp.CheckSize(out.size());
  }
  return Value::String(std::move(out));
}

Value SplitLines(const Value& self, const CallArgs& args) {
  ArgBinder b("splitlines", args, {"keepends"});
  const bool keep = Truthy(b.GetOr(0, Value::Bool(false)));
  const std::u32string s = U32(self);
  ValueList out;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    if (!IsLineBreak(s[i])) {
      ++i;
      continue;
    }
    size_t eol = i + ((s[i] == U'\r' && i + 1 < s.size() && s[i + 1] == U'\n') ? 2 : 1);
    out.push_back(Str(s.substr(start, (keep ? eol : i) - start)));
    start = i = eol;
  }
  if (start < s.size()) out.push_back(Str(s.substr(start)));
  return Value::List(std::move(out));
}

template <typename Pred>
Value AllChars(const Value& self, Pred pred) {
  const std::u32string s = U32(self);
  if (s.empty()) return Value::Bool(false);
  for (char32_t c : s) {
    if (!pred(c)) return Value::Bool(false);
  }
  return Value::Bool(true);
}

Value Pad(const Value& self, const CallArgs& args, const char* name) {
  ArgBinder b(name, args, {"width", "fillchar"});
  const int64_t width = b.Require(0).to_int();
  const std::u32string fill = DecodeUtf8(ToStr(b.GetOr(1, Value::String(" "))));
  if (fill.size() != 1) Throw(ErrorKind::kType, "The fill character must be exactly one character long");
  std::u32string s = U32(self);
  const int64_t len = static_cast<int64_t>(s.size());
  if (width <= len) return self;
  if (width > (1 << 24)) Throw(ErrorKind::kLimit, "padding width too large");
  const int64_t marg = width - len;
  int64_t left = 0;
  const std::string_view n = name;
  if (n == "rjust" || n == "zfill") left = marg;
  if (n == "center") left = marg / 2 + (marg & width & 1);
  const int64_t right = marg - left;
  if (n == "zfill") {
    std::u32string out(left, U'0');
    if (!s.empty() && (s[0] == U'+' || s[0] == U'-')) {
      out[0] = s[0];
      s[0] = U'0';
    }
    return Str(out + s);
  }
  return Str(std::u32string(left, fill[0]) + s + std::u32string(right, fill[0]));
}

Value Partition(const Value& self, const CallArgs& args, bool reverse) {
  ArgBinder b(reverse ? "rpartition" : "partition", args, {"sep"});
  const std::string& s = self.str();
  const std::string& sep = RequireStr(b.Require(0), "separator");
  if (sep.empty()) Throw(ErrorKind::kValue, "empty separator");
  const size_t hit = reverse ? s.rfind(sep) : s.find(sep);
  if (hit == std::string::npos) {
    return reverse ? Value::Tuple({Value::String(""), Value::String(""), self})
                   : Value::Tuple({self, Value::String(""), Value::String("")});
  }
  return Value::Tuple({Value::String(s.substr(0, hit)), Value::String(sep),
                       Value::String(s.substr(hit + sep.size()))});
}

Value NoArgs(const CallArgs& args, const char* name, Value result) {
  if (!args.positional.empty() || !args.keywords.empty()) {
    Throw(ErrorKind::kType, StrCat(name, "() takes no arguments"));
  }
  return result;
}

Value StrMethod(Interpreter& interp, const Value& self, std::string_view m, CallArgs& args) {
  if (m == "strip") return Strip(self, args, "strip", true, true);
  if (m == "lstrip") return Strip(self, args, "lstrip", true, false);
  if (m == "rstrip") return Strip(self, args, "rstrip", false, true);
  if (m == "split") return Split(self, args, false);
  if (m == "rsplit") return Split(self, args, true);
  if (m == "startswith") return StartsEnds(self, args, false);
  if (m == "endswith") return StartsEnds(self, args, true);
  if (m == "replace") return Replace(interp, self, args);
  if (m == "find") return Find(self, args, "find", false, false);
  if (m == "rfind") return Find(self, args, "rfind", true, false);
  if (m == "index") return Find(self, args, "index", false, true);
  if (m == "rindex") return Find(self, args, "rindex", true, true);
  if (m == "count") return Count(self, args);
  if (m == "join") return Join(interp, self, args);
  if (m == "splitlines") return SplitLines(self, args);
  if (m == "partition") return Partition(self, args, false);
  if (m == "rpartition") return Partition(self, args, true);
  if (m == "ljust" || m == "rjust" || m == "center") return Pad(self, args, m.data());
  if (m == "zfill") {
    ArgBinder b("zfill", args, {"width"});
    CallArgs pad;
    pad.positional = {b.Require(0)};
    return Pad(self, pad, "zfill");
  }
  const std::string& s = self.str();
  if (m == "upper") return NoArgs(args, "upper", Value::String(PyUpper(s)));
  if (m == "lower" || m == "casefold") return NoArgs(args, "lower", Value::String(PyLower(s)));
  if (m == "title") return NoArgs(args, "title", Value::String(PyTitle(s)));
  if (m == "capitalize") return NoArgs(args, "capitalize", Value::String(PyCapitalize(s)));
  if (m == "swapcase") {
    std::u32string out;
    for (char32_t c : DecodeUtf8(s)) {
      if (IsUpper(c)) {
        AppendLower(out, c);
      } else if (IsLower(c)) {
        AppendUpper(out, c);
      } else {
        out.push_back(c);
      }
    }
    return NoArgs(args, "swapcase", Str(out));
  }
  if (m == "isdigit") return NoArgs(args, "isdigit", AllChars(self, IsDigit));
  if (m == "isdecimal") return NoArgs(args, "isdecimal", AllChars(self, IsDecimal));
  if (m == "isalpha") return NoArgs(args, "isalpha", AllChars(self, IsAlpha));
  if (m == "isalnum") return NoArgs(args, "isalnum", AllChars(self, IsAlnum));
  if (m == "isspace") return NoArgs(args, "isspace", AllChars(self, IsSpace));
  if (m == "islower") return NoArgs(args, "islower", Value::Bool(PyIsLower(s)));
  if (m == "isupper") return NoArgs(args, "isupper", Value::Bool(PyIsUpper(s)));
  if (m == "istitle") return NoArgs(args, "istitle", Value::Bool(!s.empty() && PyTitle(s) == s &&
                                                                   (PyIsLower(s) || PyIsUpper(s) ||
                                                                    PyUpper(s) != PyLower(s))));
  Throw(ErrorKind::kRuntime, StrCat("str.", m, " is not implemented"));
}

Value DictMethod(const Value& self, std::string_view m, CallArgs& args) {
  const Dict& d = self.dict();
  if (m == "keys" || m == "values" || m == "items") {
    NoArgs(args, m.data(), Value::None());
    ValueList out;
    for (const auto& [k, v] : d.items()) {
      out.push_back(m == "keys" ? k : m == "values" ? v : Value::Tuple({k, v}));
    }
    return Value::List(std::move(out), m == "keys"     ? ListKind::kDictKeys
                                       : m == "values" ? ListKind::kDictValues
                                                       : ListKind::kDictItems);
  }
  if (m == "get") {
    ArgBinder b("get", args, {"key", "default"});
    const Value* hit = d.Find(b.Require(0));
    return hit ? *hit : b.GetOr(1, Value::None());
  }
  if (m == "copy") return NoArgs(args, "copy", self);
  Throw(ErrorKind::kRuntime, StrCat("dict.", m, " is not implemented"));
}

Value ListMethod(const Value& self, std::string_view m, CallArgs& args) {
  const ValueList& items = self.list();
  if (m == "count") {
    ArgBinder b("count", args, {"value"});
    int64_t n = 0;
    for (const Value& v : items) n += Equal(v, b.Require(0));
    return Value::Int(n);
  }
  if (m == "index") {
    ArgBinder b("index", args, {"value"});
    for (size_t i = 0; i < items.size(); ++i) {
      if (Equal(items[i], b.Require(0))) return Value::Int(static_cast<int64_t>(i));
    }
    Throw(ErrorKind::kValue, StrCat(Repr(b.Require(0)), " is not in list"));
  }
  if (m == "copy") return NoArgs(args, "copy", Value::List(items));
  Throw(ErrorKind::kRuntime, StrCat("list.", m, " is not implemented"));
}

}  // namespace

MethodLookup FindMethod(const Value& self, std::string_view name) {
  static const std::set<std::string_view> kDictSafe = {"keys", "values", "items", "get", "copy"};
  static const std::set<std::string_view> kDictUnsafe = {"pop", "popitem", "setdefault",
                                                         "update", "clear"};
  static const std::set<std::string_view> kListUnsafe = {"append", "extend", "insert", "pop",
                                                         "remove", "reverse", "sort", "clear"};
  switch (self.type()) {
    case ValueType::kString:
      return StrMethods().count(name) ? MethodLookup::kSafe : MethodLookup::kNone;
    case ValueType::kDict:
      if (kDictSafe.count(name)) return MethodLookup::kSafe;
      return kDictUnsafe.count(name) ? MethodLookup::kUnsafe : MethodLookup::kNone;
    case ValueType::kList:
      if (self.list_kind() == ListKind::kList) {
        if (name == "count" || name == "index" || name == "copy") return MethodLookup::kSafe;
        return kListUnsafe.count(name) ? MethodLookup::kUnsafe : MethodLookup::kNone;
      }
      if (self.list_kind() == ListKind::kTuple && (name == "count" || name == "index")) {
        return MethodLookup::kSafe;
      }
      return MethodLookup::kNone;
    default: return MethodLookup::kNone;
  }
}

Value CallMethod(Interpreter& interp, const Value& self, std::string_view name, CallArgs& args) {
  switch (self.type()) {
    case ValueType::kString: return StrMethod(interp, self, name, args);
    case ValueType::kDict: return DictMethod(self, name, args);
    case ValueType::kList: return ListMethod(self, name, args);
    default: break;
  }
  Throw(ErrorKind::kType, StrCat("'", TypeName(self), "' object has no method '", name, "'"));
}

}  // namespace gs::jinja
