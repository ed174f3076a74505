// jinja2's builtin filters (jinja2/filters.py) plus transformers' tojson, with their Python
// semantics: lazy results (map, select, ...) are generators, sort/dictsort are stable and
// case-insensitive by default, numbers convert with Python's int()/float() rules.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "chat/jinja/args.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/objects.h"
#include "chat/jinja/operators.h"
#include "chat/jinja/parser.h"
#include "chat/jinja/py_format.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

Value Str(std::string s) { return Value::String(std::move(s)); }
Value Generator(ValueList items) { return Value::List(std::move(items), ListKind::kGenerator); }

Value IgnoreCase(const Value& v) { return v.is_string() ? Str(PyLower(v.str())) : v; }

// jinja2's _prepare_attribute_parts + make_attrgetter: "a.b.0" walks items/attributes.
class AttrGetter {
 public:
  AttrGetter(const Value& attribute, bool lower, Value fallback = Value::None())
      : lower_(lower), fallback_(std::move(fallback)) {
    if (attribute.is_string()) {
      for (const Value& part : Split(attribute.str())) parts_.push_back(part);
    } else if (!attribute.is_none() && !attribute.is_undefined()) {
      parts_.push_back(attribute);
    }
  }
  Value operator()(Interpreter& interp, Value item) const {
    for (const Value& part : parts_) {
      item = interp.GetItem(item, part);
      if (!fallback_.is_none() && item.is_undefined()) item = fallback_;
    }
    return lower_ ? IgnoreCase(item) : item;
  }

 private:
  static ValueList Split(const std::string& s) {
    ValueList out;
    size_t start = 0;
    while (true) {
      size_t dot = s.find('.', start);
      std::string part = s.substr(start, dot == std::string::npos ? std::string::npos
                                                                   : dot - start);
      bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
      long long v = 0;
      bool overflow = false;
      if (digits && ParsePyInt(part, 10, &v, &overflow) && !overflow) {
        out.push_back(Value::Int(v));
      } else {
        out.push_back(Str(part));
      }
      if (dot == std::string::npos) return out;
      start = dot + 1;
    }
  }
  ValueList parts_;
  bool lower_;
  Value fallback_;
};

bool CaseSensitive(const ArgBinder& b, size_t i) {
  return Truthy(b.GetOr(i, Value::Bool(false)));
}

// Stable sort with Python's `<` (raises TypeError on unorderable keys).
void SortByKeys(std::vector<std::pair<Value, Value>>& keyed, bool reverse) {
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
    return reverse ? Less(y.first, x.first) : Less(x.first, y.first);
  });
}

// ---- individual filters ----

Value FAbs(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("abs", args, {});
  if (v.is_int() || v.is_bool()) {
    if (v.to_int() == INT64_MIN) Throw(ErrorKind::kOverflow, "integer out of range");
    return Value::Int(v.to_int() < 0 ? -v.to_int() : v.to_int());
  }
  if (v.is_float()) return Value::Float(std::fabs(v.as_float()));
  if (v.is_undefined()) v.FailUndefined();
  Throw(ErrorKind::kType, StrCat("bad operand type for abs(): '", TypeName(v), "'"));
}

Value FAttr(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("attr", args, {"name"});
  const std::string name = ToStr(b.Require(0));
  // Only Python attributes, never items: a dict's keys are not attributes.
  if (v.is_undefined()) v.FailUndefined();
  if (v.is_object() || FindMethod(v, name) != MethodLookup::kNone) return interp.GetAttr(v, name);
  return Value::UndefinedMember(v, Str(name));
}

Value FBatch(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("batch", args, {"linecount", "fill_with"});
  const int64_t n = b.Require(0).to_int();
  if (n <= 0) Throw(ErrorKind::kValue, "batch size must be positive");
  ValueList out, cur;
  for (const Value& item : Iterate(v)) {
    if (static_cast<int64_t>(cur.size()) == n) {
      out.push_back(Value::List(std::move(cur)));
      cur.clear();
    }
    cur.push_back(item);
  }
  if (!cur.empty()) {
    const Value* fill = b.Get(1);
    if (fill && !fill->is_none()) {
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*fill);
    }
    out.push_back(Value::List(std::move(cur)));
  }
  return Generator(std::move(out));
}

Value FCapitalize(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("capitalize", args, {});
  return Str(PyCapitalize(ToStr(v)));
}

Value FCenter(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("center", args, {"width"});
  CallArgs pad;
  pad.positional = {b.GetOr(0, Value::Int(80))};
  return CallMethod(interp, Str(ToStr(v)), "center", pad);
}

Value FDefault(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("default", args, {"default_value", "boolean"});
  const bool boolean = Truthy(b.GetOr(1, Value::Bool(false)));
  if (v.is_undefined() || (boolean && !Truthy(v))) return b.GetOr(0, Str(""));
  return v;
}

Value FDictsort(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("dictsort", args, {"case_sensitive", "by", "reverse"});
  const bool cs = CaseSensitive(b, 0);
  const std::string by = ToStr(b.GetOr(1, Str("key")));
  const bool reverse = Truthy(b.GetOr(2, Value::Bool(false)));
  if (by != "key" && by != "value") {
    Throw(ErrorKind::kFilterArgument, "You can only sort by either \"key\" or \"value\"");
  }
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_dict()) {
    Throw(ErrorKind::kType, StrCat("'", TypeName(v), "' object has no attribute 'items'"));
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [k, val] : v.dict().items()) {
    const Value& key = by == "key" ? k : val;
    keyed.emplace_back(cs ? key : IgnoreCase(key), Value::Tuple({k, val}));
  }
  SortByKeys(keyed, reverse);
  ValueList out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::List(std::move(out));
}

Value FEscape(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("escape", args, {});
  std::string out;
  for (char c : ToStr(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return Str(std::move(out));
}

Value FFirst(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("first", args, {});
  ValueList items = Iterate(v);
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

Value FLast(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("last", args, {});
  if (v.is_list() && (v.list_kind() == ListKind::kGenerator ||
                      v.list_kind() == ListKind::kReverseIterator)) {
    Throw(ErrorKind::kType, StrCat("'", TypeName(v), "' object is not reversible"));
  }
  ValueList items = Iterate(v);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value FFloat(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("float", args, {"default"});
  const Value fallback = b.GetOr(0, Value::Float(0.0));
  if (v.is_undefined()) v.FailUndefined();
  if (v.is_number()) return Value::Float(v.to_double());
  if (v.is_string()) {
    double d;
    if (ParsePyFloat(v.str(), &d)) return Value::Float(d);
  }
  return fallback;
}

Value FInt(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("int", args, {"default", "base"});
  const Value fallback = b.GetOr(0, Value::Int(0));
  const int64_t base = b.GetOr(1, Value::Int(10)).to_int();
  if (v.is_undefined()) v.FailUndefined();
  if (v.is_int() || v.is_bool()) return Value::Int(v.to_int());
  auto from_double = [](double d) {
    if (std::isnan(d)) Throw(ErrorKind::kValue, "cannot convert float NaN to integer");
    if (std::isinf(d)) Throw(ErrorKind::kOverflow, "cannot convert float infinity to integer");
    if (std::fabs(d) >= 9.2e18) Throw(ErrorKind::kOverflow, "integer does not fit in 64 bits");
    return Value::Int(static_cast<int64_t>(d));
  };
  if (v.is_float()) return from_double(v.as_float());
  if (v.is_string()) {
    long long n = 0;
    bool overflow = false;
    if (base >= 2 && base <= 36 && ParsePyInt(v.str(), static_cast<int>(base), &n, &overflow)) {
      if (overflow) Throw(ErrorKind::kOverflow, "integer does not fit in 64 bits");
      return Value::Int(n);
    }
    double d;
    if (ParsePyFloat(v.str(), &d)) return from_double(d);
  }
  return fallback;
}

Value FIndent(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("indent", args, {"width", "first", "blank"});
  const Value width = b.GetOr(0, Value::Int(4));
  const std::string indention =
      width.is_string() ? width.str()
                        : std::string(static_cast<size_t>(std::max<int64_t>(0, width.to_int())),
                                      ' ');
  const bool first = Truthy(b.GetOr(1, Value::Bool(false)));
  const bool blank = Truthy(b.GetOr(2, Value::Bool(false)));
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_string()) {
    Throw(ErrorKind::kType, StrCat("unsupported operand type(s) for +=: '", TypeName(v),
                                   "' and 'str'"));
  }
  CallArgs none;
  // jinja2 appends "\n" before splitlines() so a trailing newline survives.
  Value lines_v = CallMethod(interp, Str(ToStr(v) + "\n"), "splitlines", none);
  const ValueList& lines = lines_v.list();
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) {
        rv += "\n";
        rv += indention;
      }
      rv += lines[i].str();
    }
  } else {
    rv = lines.empty() ? "" : lines[0].str();
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].str().empty()) rv += indention;
      rv += lines[i].str();
    }
  }
  if (first) rv = indention + rv;
  interp.CheckSize(rv.size());
  return Str(std::move(rv));
}

Value FItems(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("items", args, {});
  if (v.is_undefined()) return Generator({});
  if (!v.is_dict()) Throw(ErrorKind::kType, "Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, val] : v.dict().items()) out.push_back(Value::Tuple({k, val}));
  return Generator(std::move(out));
}

Value FJoin(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("join", args, {"d", "attribute"});
  const std::string sep = ToStr(b.GetOr(0, Str("")));
  const Value attribute = b.GetOr(1, Value::None());
  AttrGetter getter(attribute, false);
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += ToStr(attribute.is_none() ? item : getter(interp, item));
    interp.CheckSize(out.size());
  }
  return Str(std::move(out));
}

Value FLength(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("length", args, {});
  return Value::Int(static_cast<int64_t>(Length(v)));
}

Value FList(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("list", args, {});
  return Value::List(Iterate(v));
}

Value FLower(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("lower", args, {});
  return Str(PyLower(ToStr(v)));
}

Value FUpper(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("upper", args, {});
  return Str(PyUpper(ToStr(v)));
}

Value FMap(Interpreter& interp, const Value& v, CallArgs& args) {
  ValueList out;
  if (!Truthy(v)) return Generator({});  // jinja2 checks `if value:` before iterating
  if (args.positional.empty()) {
    ArgBinder b("map", args, {"attribute", "default"});
    if (!b.Get(0)) Throw(ErrorKind::kFilterArgument, "map requires a filter argument");
    AttrGetter getter(*b.Get(0), false, b.GetOr(1, Value::None()));
    for (const Value& item : Iterate(v)) out.push_back(getter(interp, item));
    return Generator(std::move(out));
  }
  const std::string name = ToStr(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keywords = args.keywords;
  for (const Value& item : Iterate(v)) {
    CallArgs a = rest;
    out.push_back(interp.ApplyFilter(name, item, a));
  }
  return Generator(std::move(out));
}

Value MinMax(Interpreter& interp, const Value& v, CallArgs& args, bool is_max) {
  ArgBinder b(is_max ? "max" : "min", args, {"case_sensitive", "attribute"});
  AttrGetter key(b.GetOr(1, Value::None()), !CaseSensitive(b, 0));
  ValueList items = Iterate(v);
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = key(interp, items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(interp, items[i]);
    if (is_max ? Less(best_key, k) : Less(k, best_key)) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value SelectReject(Interpreter& interp, const Value& v, CallArgs& args, bool select,
                   bool by_attr) {
  if (!Truthy(v)) return Generator({});  // jinja2 checks `if value:` before iterating
  size_t off = 0;
  std::optional<AttrGetter> getter;
  if (by_attr) {
    if (args.positional.empty()) {
      Throw(ErrorKind::kFilterArgument, "Missing parameter for attribute name");
    }
    getter.emplace(args.positional[0], false);
    off = 1;
  }
  const bool has_test = args.positional.size() > off;
  const std::string test = has_test ? ToStr(args.positional[off]) : "";
  CallArgs rest;
  if (has_test) rest.positional.assign(args.positional.begin() + off + 1, args.positional.end());
  rest.keywords = args.keywords;
  ValueList out;
  for (const Value& item : Iterate(v)) {
    Value probe = getter ? (*getter)(interp, item) : item;
    bool ok;
    if (has_test) {
      CallArgs a = rest;
      ok = interp.ApplyTest(test, probe, a);
    } else {
      ok = Truthy(probe);
    }
    if (ok == select) out.push_back(item);
  }
  return Generator(std::move(out));
}

Value FReplace(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("replace", args, {"old", "new", "count"});
  CallArgs a;
  a.positional = {Str(ToStr(b.Require(0))), Str(ToStr(b.Require(1)))};
  const Value count = b.GetOr(2, Value::None());
  if (!count.is_none()) a.positional.push_back(count);
  return CallMethod(interp, Str(ToStr(v)), "replace", a);
}

Value FReverse(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("reverse", args, {});
  if (v.is_string()) {
    std::u32string u = DecodeUtf8(v.str());
    std::reverse(u.begin(), u.end());
    return Str(EncodeUtf8(u));
  }
  ValueList items = Iterate(v);
  std::reverse(items.begin(), items.end());
  const bool is_iterator = v.is_list() && (v.list_kind() == ListKind::kGenerator);
  return Value::List(std::move(items),
                     is_iterator ? ListKind::kList : ListKind::kReverseIterator);
}

// Python round(x, n): correctly rounded (half-even on the exact binary value).
double PyRound(double x, int64_t n) {
  if (!std::isfinite(x)) return x;
  if (n >= 0) {
    if (n > 320) return x;
    std::vector<char> buf(400 + static_cast<size_t>(n));
    std::snprintf(buf.data(), buf.size(), "%.*f", static_cast<int>(n), x);
    return std::strtod(buf.data(), nullptr);
  }
  const double p = std::pow(10.0, static_cast<double>(-n));
  return std::nearbyint(x / p) * p;
}

Value FRound(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("round", args, {"precision", "method"});
  const int64_t precision = b.GetOr(0, Value::Int(0)).to_int();
  const std::string method = ToStr(b.GetOr(1, Str("common")));
  if (method != "common" && method != "ceil" && method != "floor") {
    Throw(ErrorKind::kFilterArgument, "method must be common, ceil or floor");
  }
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_number()) {
    Throw(ErrorKind::kType, StrCat("type ", TypeName(v), " doesn't define __round__ method"));
  }
  if (method == "common") {
    if (v.is_int() || v.is_bool()) {
      if (precision >= 0) return Value::Int(v.to_int());
      const double p = std::pow(10.0, static_cast<double>(-precision));
      return Value::Int(static_cast<int64_t>(std::nearbyint(v.to_double() / p) * p));
    }
    return Value::Float(PyRound(v.as_float(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double r = method == "ceil" ? std::ceil(v.to_double() * scale)
                                    : std::floor(v.to_double() * scale);
  return Value::Float(r / scale);
}

Value FSafe(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("safe", args, {});
  return Str(ToStr(v));
}

Value FSlice(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("slice", args, {"slices", "fill_with"});
  const int64_t slices = b.Require(0).to_int();
  if (slices <= 0) Throw(ErrorKind::kValue, "slices must be positive");
  const Value* fill = b.Get(1);
  ValueList seq = Iterate(v);
  const int64_t length = static_cast<int64_t>(seq.size());
  const int64_t per = length / slices;
  const int64_t extra = length % slices;
  int64_t offset = 0;
  ValueList out;
  for (int64_t i = 0; i < slices; ++i) {
    const int64_t start = offset + i * per;
    if (i < extra) ++offset;
    const int64_t end = offset + (i + 1) * per;
    ValueList tmp(seq.begin() + start, seq.begin() + end);
    if (fill && !fill->is_none() && i >= extra) tmp.push_back(*fill);
    out.push_back(Value::List(std::move(tmp)));
  }
  return Generator(std::move(out));
}

Value FSort(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("sort", args, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = Truthy(b.GetOr(0, Value::Bool(false)));
  const bool lower = !CaseSensitive(b, 1);
  const Value attribute = b.GetOr(2, Value::None());
  // make_multi_attrgetter: "a,b" sorts by several attributes; the key is always a list.
  std::vector<AttrGetter> getters;
  if (attribute.is_string()) {
    const std::string& spec = attribute.str();
    size_t start = 0;
    while (true) {
      size_t comma = spec.find(',', start);
      getters.emplace_back(Str(spec.substr(start, comma == std::string::npos ? std::string::npos
                                                                              : comma - start)),
                           lower);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    getters.emplace_back(attribute, lower);
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : Iterate(v)) {
    ValueList key;
    for (const AttrGetter& g : getters) key.push_back(g(interp, item));
    keyed.emplace_back(Value::List(std::move(key)), item);
  }
  SortByKeys(keyed, reverse);
  ValueList out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::List(std::move(out));
}

Value FString(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("string", args, {});
  return Str(ToStr(v));
}

Value FSum(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("sum", args, {"attribute", "start"});
  AttrGetter getter(b.GetOr(0, Value::None()), false);
  Value total = b.GetOr(1, Value::Int(0));
  for (const Value& item : Iterate(v)) {
    total = BinaryOperation(interp, BinaryOp::kAdd, total, getter(interp, item));
  }
  return total;
}

Value FTitle(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("title", args, {});
  // jinja2 splits on runs of [-\s({\[<] and upper-cases each piece's first character.
  const std::u32string s = DecodeUtf8(ToStr(v));
  auto is_sep = [](char32_t c) {
    return c == U'-' || c == U'(' || c == U'{' || c == U'[' || c == U'<' || IsSpace(c);
  };
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    const bool sep = is_sep(s[i]);
    while (j < s.size() && is_sep(s[j]) == sep) ++j;
    if (sep) {
      out.append(s, i, j - i);
    } else {
      AppendUpper(out, s[i]);
      const std::u32string_view rest = std::u32string_view(s).substr(i + 1, j - i - 1);
      for (size_t k = 0; k < rest.size(); ++k) AppendLowerInContext(out, rest, k);
    }
    i = j;
  }
  return Str(EncodeUtf8(out));
}

Value FToJson(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = Truthy(b.GetOr(0, Value::Bool(false)));
  const Value indent = b.GetOr(1, Value::None());
  if (!indent.is_none()) {
    o.has_indent = true;
    o.indent = indent.is_string()
                   ? indent.str()
                   : std::string(static_cast<size_t>(std::max<int64_t>(0, indent.to_int())), ' ');
  }
  const Value seps = b.GetOr(2, Value::None());
  if (!seps.is_none()) {
    ValueList parts = Iterate(seps);
    if (parts.size() != 2) Throw(ErrorKind::kValue, "separators must be a pair of strings");
    o.has_separators = true;
    o.item_separator = ToStr(parts[0]);
    o.key_separator = ToStr(parts[1]);
  }
  o.sort_keys = Truthy(b.GetOr(3, Value::Bool(false)));
  std::string out = ToJson(v, o);
  interp.CheckSize(out.size());
  return Str(std::move(out));
}

Value FTrim(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("trim", args, {"chars"});
  const Value chars = b.GetOr(0, Value::None());
  if (chars.is_none()) return Str(PyStrip(ToStr(v), true, true));
  return Str(PyStripChars(ToStr(v), ToStr(chars), true, true));
}

Value FTruncate(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder b("truncate", args, {"length", "killwords", "end", "leeway"});
  const int64_t length = b.GetOr(0, Value::Int(255)).to_int();
  const bool killwords = Truthy(b.GetOr(1, Value::Bool(false)));
  const std::u32string end = DecodeUtf8(ToStr(b.GetOr(2, Str("..."))));
  const int64_t leeway = b.GetOr(3, Value::Int(5)).to_int();
  if (length < static_cast<int64_t>(end.size())) {
    Throw(ErrorKind::kValue, StrCat("expected length >= ", end.size(), ", got ", length));
  }
  if (leeway < 0) Throw(ErrorKind::kValue, StrCat("expected leeway >= 0, got ", leeway));
  // len() first, as jinja2 does: short non-strings come back unchanged, others fail.
  if (static_cast<int64_t>(Length(v)) <= length + leeway) return v;
  if (!v.is_string()) {
    Throw(ErrorKind::kType, StrCat("'", TypeName(v), "' object cannot be truncated"));
  }
  const std::u32string s = DecodeUtf8(v.str());
  std::u32string head = s.substr(0, length - end.size());
  if (!killwords) {
    const size_t space = head.rfind(U' ');
    if (space != std::u32string::npos) head.resize(space);
  }
  return Str(EncodeUtf8(head + end));
}

Value FUnique(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgBinder b("unique", args, {"case_sensitive", "attribute"});
  AttrGetter key(b.GetOr(1, Value::None()), !CaseSensitive(b, 0));
  std::unordered_set<std::string> seen;
  ValueList out;
  for (const Value& item : Iterate(v)) {
    if (seen.insert(HashKey(key(interp, item))).second) out.push_back(item);
  }
  return Generator(std::move(out));
}

Value FWordcount(Interpreter&, const Value& v, CallArgs& args) {
  ArgBinder("wordcount", args, {});
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(ToStr(v))) {
    const bool w = IsWordChar(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::Int(n);
}

}  // namespace

const std::unordered_map<std::string, FilterFn>& FilterTable() {
  static const std::unordered_map<std::string, FilterFn> kTable = {
      {"abs", FAbs},
      {"attr", FAttr},
      {"batch", FBatch},
      {"capitalize", FCapitalize},
      {"center", FCenter},
      {"count", FLength},
      {"d", FDefault},
      {"default", FDefault},
      {"dictsort", FDictsort},
      {"e", FEscape},
      {"escape", FEscape},
      {"first", FFirst},
      {"float", FFloat},
      {"forceescape", FEscape},
      {"indent", FIndent},
      {"int", FInt},
      {"items", FItems},
      {"join", FJoin},
      {"last", FLast},
      {"length", FLength},
      {"list", FList},
      {"lower", FLower},
      {"map", FMap},
      {"max", [](Interpreter& i, const Value& v, CallArgs& a) { return MinMax(i, v, a, true); }},
      {"min", [](Interpreter& i, const Value& v, CallArgs& a) { return MinMax(i, v, a, false); }},
      {"reject",
       [](Interpreter& i, const Value& v, CallArgs& a) {
         return SelectReject(i, v, a, false, false);
       }},
      {"rejectattr",
       [](Interpreter& i, const Value& v, CallArgs& a) {
         return SelectReject(i, v, a, false, true);
       }},
      {"replace", FReplace},
      {"reverse", FReverse},
      {"round", FRound},
      {"safe", FSafe},
      {"select",
       [](Interpreter& i, const Value& v, CallArgs& a) {
         return SelectReject(i, v, a, true, false);
       }},
      {"selectattr",
       [](Interpreter& i, const Value& v, CallArgs& a) {
         return SelectReject(i, v, a, true, true);
       }},
      {"slice", FSlice},
      {"sort", FSort},
      {"string", FString},
      {"sum", FSum},
      {"title", FTitle},
      {"tojson", FToJson},
      {"trim", FTrim},
      {"truncate", FTruncate},
      {"unique", FUnique},
      {"upper", FUpper},
      {"wordcount", FWordcount},
  };
  return kTable;
}

bool IsKnownFilter(std::string_view name) {
  return FilterTable().count(std::string(name)) != 0;
}

}  // namespace gs::jinja
