#include "chat/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "chat/jinja/py_format.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kSyntax: return "TemplateSyntaxError";
    case ErrorKind::kUndefined: return "UndefinedError";
    case ErrorKind::kType: return "TypeError";
    case ErrorKind::kValue: return "ValueError";
    case ErrorKind::kSecurity: return "SecurityError";
    case ErrorKind::kZeroDivision: return "ZeroDivisionError";
    case ErrorKind::kOverflow: return "OverflowError";
    case ErrorKind::kTemplate: return "TemplateError";
    case ErrorKind::kFilterArgument: return "FilterArgumentError";
    case ErrorKind::kRuntime: return "TemplateRuntimeError";
    case ErrorKind::kLimit: return "LimitExceeded";
  }
  return "Error";
}

Value Value::String(std::string s) {
  Value v(ValueType::kString);
  v.ptr_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

static uint16_t NestedDepth(int child_depth) {
  if (child_depth + 1 > kMaxValueDepth) {
    Throw(ErrorKind::kLimit, StrCat("values nested deeper than ", kMaxValueDepth, " levels"));
  }
  return static_cast<uint16_t>(child_depth + 1);
}

Value Value::List(ValueList items, ListKind kind) {
  Value v(ValueType::kList);
  v.list_kind_ = kind;
  int deepest = 0;
  for (const Value& item : items) deepest = std::max(deepest, item.depth());
  v.depth_ = NestedDepth(deepest);
  v.ptr_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::DictValue(Dict d) { return DictValue(std::make_shared<const Dict>(std::move(d))); }

Value Value::DictValue(std::shared_ptr<const Dict> d) {
  Value v(ValueType::kDict);
  int deepest = 0;
  for (const auto& kv : d->items()) deepest = std::max(deepest, kv.second.depth());
  v.depth_ = NestedDepth(deepest);
  v.ptr_ = std::move(d);
  return v;
}

Value Value::MakeObject(std::shared_ptr<Object> o) {
  Value v(ValueType::kObject);
  v.depth_ = NestedDepth(o->NestingDepth());
  v.ptr_ = std::move(o);
  return v;
}

Value Value::Undefined(std::string hint, ErrorKind kind) {
  Value v(ValueType::kUndefined);
  v.undefined_kind_ = kind;
  if (!hint.empty()) v.ptr_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::UndefinedName(std::string_view name) {
  return Undefined(StrCat(StringRepr(name), " is undefined"));
}

// jinja2's object_type_repr: "None" for None, "<type> object" otherwise.
static std::string ObjectTypeRepr(const Value& obj) {
  if (obj.is_none()) return "None";
  return StrCat(TypeName(obj), " object");
}

Value Value::UndefinedMember(const Value& obj, const Value& key) {
  if (key.is_string()) {
    return Undefined(StrCat("'", ObjectTypeRepr(obj), "' has no attribute ", Repr(key)));
  }
  return Undefined(StrCat(StringRepr(ObjectTypeRepr(obj)), " has no element ", Repr(key)));
}

const std::string& Value::undefined_hint() const {
  static const std::string kEmpty;
  return (type_ == ValueType::kUndefined && ptr_) ? str() : kEmpty;
}

void Value::FailUndefined() const {
  const std::string& hint = undefined_hint();
  Throw(undefined_kind_, hint.empty() ? "value is undefined" : hint);
}

double Value::to_double() const {
  switch (type_) {
    case ValueType::kBool: return b_ ? 1.0 : 0.0;
    case ValueType::kInt: return static_cast<double>(i_);
    case ValueType::kFloat: return f_;
    default: return 0.0;
  }
}

// ---- Dict ----

std::string HashKey(const Value& v) {
  switch (v.type()) {
    case ValueType::kNone: return "N";
    case ValueType::kBool:
    case ValueType::kInt: return StrCat("i", v.to_int());
    case ValueType::kFloat: {
      const double d = v.as_float();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
        return StrCat("i", static_cast<int64_t>(d));
      }
      return StrCat("f", FloatRepr(d));
    }
    case ValueType::kString: return StrCat("s", v.str());
    case ValueType::kUndefined: return "u";
    case ValueType::kList:
      if (v.list_kind() == ListKind::kTuple) {
        std::string key = "t(";
        for (const Value& item : v.list()) {
          key += HashKey(item);
          key += '\x1f';
        }
        return key + ")";
      }
      if (v.list_kind() == ListKind::kList || v.list_kind() == ListKind::kDictKeys ||
          v.list_kind() == ListKind::kDictValues || v.list_kind() == ListKind::kDictItems) {
        Throw(ErrorKind::kType, StrCat("unhashable type: '", TypeName(v), "'"));
      }
      return StrCat("p", reinterpret_cast<uintptr_t>(v.identity()));
    case ValueType::kDict: Throw(ErrorKind::kType, "unhashable type: 'dict'");
    case ValueType::kObject: return StrCat("p", reinterpret_cast<uintptr_t>(v.identity()));
  }
  return "";
}

const Value* Dict::Find(const Value& key) const {
  auto it = index_.find(HashKey(key));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const Value* Dict::FindString(std::string_view key) const {
  std::string k = "s";
  k += key;
  auto it = index_.find(k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void Dict::Set(Value key, Value value) {
  std::string k = HashKey(key);
  auto it = index_.find(k);
  if (it != index_.end()) {
    items_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(std::move(k), items_.size());
  items_.emplace_back(std::move(key), std::move(value));
}

// ---- Object defaults ----

Value Object::GetAttr(std::string_view name) const {
  return Value::Undefined(StrCat("'", TypeName(), " object' has no attribute ", StringRepr(name)));
}

Value Object::Call(Interpreter&, CallArgs&) {
  Throw(ErrorKind::kType, StrCat("'", TypeName(), "' object is not callable"));
}

void Object::SetAttr(std::string_view, Value) {
  Throw(ErrorKind::kSecurity, "can not assign attributes to a non-namespace object");
}

// ---- Python protocol helpers ----

bool Truthy(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined:
    case ValueType::kNone: return false;
    case ValueType::kBool: return v.as_bool();
    case ValueType::kInt: return v.as_int() != 0;
    case ValueType::kFloat: return v.as_float() != 0.0;
    case ValueType::kString: return !v.str().empty();
    case ValueType::kList:
      if (v.list_kind() == ListKind::kGenerator || v.list_kind() == ListKind::kReverseIterator) {
        return true;
      }
      return !v.list().empty();
    case ValueType::kDict: return v.dict().size() != 0;
    case ValueType::kObject: return true;
  }
  return false;
}

std::string TypeName(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined: return "Undefined";
    case ValueType::kNone: return "NoneType";
    case ValueType::kBool: return "bool";
    case ValueType::kInt: return "int";
    case ValueType::kFloat: return "float";
    case ValueType::kString: return "str";
    case ValueType::kList:
      switch (v.list_kind()) {
        case ListKind::kList: return "list";
        case ListKind::kTuple: return "tuple";
        case ListKind::kGenerator: return "generator";
        case ListKind::kDictKeys: return "dict_keys";
        case ListKind::kDictValues: return "dict_values";
        case ListKind::kDictItems: return "dict_items";
        case ListKind::kReverseIterator: return "list_reverseiterator";
      }
      return "list";
    case ValueType::kDict: return "dict";
    case ValueType::kObject: return v.object().TypeName();
  }
  return "object";
}

static std::string JoinRepr(const ValueList& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += Repr(items[i]);
  }
  return out;
}

static std::string ListRepr(const Value& v) {
  const ValueList& items = v.list();
  switch (v.list_kind()) {
    case ListKind::kList: return StrCat("[", JoinRepr(items), "]");
    case ListKind::kTuple:
      return items.size() == 1 ? StrCat("(", Repr(items[0]), ",)")
                               : StrCat("(", JoinRepr(items), ")");
    case ListKind::kDictKeys: return StrCat("dict_keys([", JoinRepr(items), "])");
    case ListKind::kDictValues: return StrCat("dict_values([", JoinRepr(items), "])");
    case ListKind::kDictItems: return StrCat("dict_items([", JoinRepr(items), "])");
    // CPython prints a memory address here; there is nothing stable to match.
    case ListKind::kGenerator: return "<generator object>";
    case ListKind::kReverseIterator: return "<list_reverseiterator object>";
  }
  return "";
}

std::string Repr(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined: return "Undefined";
    case ValueType::kString: return StringRepr(v.str());
    default: return ToStr(v);
  }
}

namespace {
// Namespaces can refer to themselves ({% set ns.me = ns %}); printing must not recurse forever.
thread_local int g_str_depth = 0;
struct StrDepthGuard {
  StrDepthGuard() {
    if (++g_str_depth > kMaxValueDepth + 8) {
      --g_str_depth;
      Throw(ErrorKind::kLimit, "value nested too deeply to print (self-referencing namespace?)");
    }
  }
  ~StrDepthGuard() { --g_str_depth; }
};
}  // namespace

std::string ToStr(const Value& v) {
  StrDepthGuard guard;
  switch (v.type()) {
    case ValueType::kUndefined: return "";
    case ValueType::kNone: return "None";
    case ValueType::kBool: return v.as_bool() ? "True" : "False";
    case ValueType::kInt: return std::to_string(v.as_int());
    case ValueType::kFloat: return FloatRepr(v.as_float());
    case ValueType::kString: return v.str();
    case ValueType::kList: return ListRepr(v);
    case ValueType::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.dict().items()) {
        if (!first) out += ", ";
        first = false;
        out += Repr(k);
        out += ": ";
        out += Repr(val);
      }
      return out + "}";
    }
    case ValueType::kObject: return v.object().Repr();
  }
  return "";
}

static bool BothIntegral(const Value& a, const Value& b) {
  return (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (BothIntegral(a, b)) return a.to_int() == b.to_int();
    return a.to_double() == b.to_double();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case ValueType::kUndefined:
    case ValueType::kNone: return true;
    case ValueType::kString: return a.str() == b.str();
    case ValueType::kList: {
      const bool seq_a = a.is_sequence_list(), seq_b = b.is_sequence_list();
      if (!seq_a || !seq_b) {
        if (a.list_kind() == ListKind::kDictValues || a.list_kind() == ListKind::kGenerator ||
            a.list_kind() == ListKind::kReverseIterator || a.list_kind() != b.list_kind()) {
          return a.identity() == b.identity();
        }
      } else if (a.list_kind() != b.list_kind()) {
        return false;
      }
      const ValueList& x = a.list();
      const ValueList& y = b.list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equal(x[i], y[i])) return false;
      }
      return true;
    }
    case ValueType::kDict: {
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* other = y.Find(k);
        if (!other || !Equal(v, *other)) return false;
      }
      return true;
    }
    case ValueType::kObject: return a.identity() == b.identity();
    default: return false;
  }
}

[[noreturn]] static void Unorderable(const Value& a, const Value& b) {
  Throw(ErrorKind::kType, StrCat("'<' not supported between instances of '", TypeName(a),
                                 "' and '", TypeName(b), "'"));
}

bool Less(const Value& a, const Value& b) {
  if (a.is_undefined()) a.FailUndefined();
  if (b.is_undefined()) b.FailUndefined();
  if (a.is_number() && b.is_number()) {
    if (BothIntegral(a, b)) return a.to_int() < b.to_int();
    return a.to_double() < b.to_double();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order = code points
  if (a.is_sequence_list() && b.is_sequence_list() && a.list_kind() == b.list_kind()) {
    const ValueList& x = a.list();
    const ValueList& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!Equal(x[i], y[i])) return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  Unorderable(a, b);
}

size_t Length(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined: return 0;
    case ValueType::kString: return CodePointCount(v.str());
    case ValueType::kList:
      if (v.list_kind() == ListKind::kGenerator || v.list_kind() == ListKind::kReverseIterator) {
        break;
      }
      return v.list().size();
    case ValueType::kDict: return v.dict().size();
    default: break;
  }
  Throw(ErrorKind::kType, StrCat("object of type '", TypeName(v), "' has no len()"));
}

ValueList Iterate(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined: return {};
    case ValueType::kList: return v.list();
    case ValueType::kString: {
      ValueList out;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
        out.push_back(Value::String(s.substr(i, n)));
        i += n;
      }
      return out;
    }
    case ValueType::kDict: {
      ValueList out;
      out.reserve(v.dict().size());
      for (const auto& kv : v.dict().items()) out.push_back(kv.first);
      return out;
    }
    default: break;
  }
  Throw(ErrorKind::kType, StrCat("'", TypeName(v), "' object is not iterable"));
}

}  // namespace gs::jinja
