// Runtime values of the Jinja interpreter, modelled on the Python objects jinja2 works with:
// None, bool, int, float, str, list, tuple, dict, jinja2's Undefined, plus "objects" (namespace,
// macro, loop, bound method, ...). Lists and dicts are immutable once built (the sandbox that
// transformers uses forbids mutating them), so values share their payload by reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chat/jinja/error.h"

namespace gs::jinja {

class Value;
class Object;
class Interpreter;

using ValueList = std::vector<Value>;

enum class ValueType : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kDict,
  kObject,
};

// What Python type a kList value stands for; decides printing, `is sequence`, len(), ...
enum class ListKind : uint8_t {
  kList,
  kTuple,
  kGenerator,   // results of map/select/...: print as <generator object>, no len()
  kDictKeys,    // dict.keys()
  kDictValues,  // dict.values()
  kDictItems,   // dict.items()
  kReverseIterator,
};

class Dict;

class Value {
 public:
  Value() : type_(ValueType::kUndefined) {}  // a plain Undefined
  static Value None() { return Value(ValueType::kNone); }
  static Value Bool(bool b) {
    Value v(ValueType::kBool);
    v.b_ = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v(ValueType::kInt);
    v.i_ = i;
    return v;
  }
  static Value Float(double f) {
    Value v(ValueType::kFloat);
    v.f_ = f;
    return v;
  }
  static Value String(std::string s);
  static Value List(ValueList items, ListKind kind = ListKind::kList);
  static Value Tuple(ValueList items) { return List(std::move(items), ListKind::kTuple); }
  static Value DictValue(Dict d);
  static Value DictValue(std::shared_ptr<const Dict> d);
  static Value MakeObject(std::shared_ptr<Object> o);
  // An Undefined that remembers why it is undefined, for the error raised when it is used.
  static Value Undefined(std::string hint, ErrorKind kind = ErrorKind::kUndefined);
  // Undefined for a missing name: "'x' is undefined".
  static Value UndefinedName(std::string_view name);
  // Undefined for a missing attribute/item: "'dict object' has no attribute 'x'".
  static Value UndefinedMember(const Value& obj, const Value& key);

  ValueType type() const { return type_; }
  bool is_undefined() const { return type_ == ValueType::kUndefined; }
  bool is_none() const { return type_ == ValueType::kNone; }
  bool is_bool() const { return type_ == ValueType::kBool; }
  bool is_int() const { return type_ == ValueType::kInt; }
  bool is_float() const { return type_ == ValueType::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return type_ == ValueType::kString; }
  bool is_list() const { return type_ == ValueType::kList; }
  bool is_dict() const { return type_ == ValueType::kDict; }
  bool is_object() const { return type_ == ValueType::kObject; }
  // list or tuple (indexable Python sequences we build), not generators/views.
  bool is_sequence_list() const {
    return is_list() && (list_kind_ == ListKind::kList || list_kind_ == ListKind::kTuple);
  }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_float() const { return f_; }
  // Numeric value of a bool/int/float as double.
  double to_double() const;
  // Numeric value of a bool/int as integer.
  int64_t to_int() const { return is_bool() ? (b_ ? 1 : 0) : i_; }
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const ValueList& list() const { return *static_cast<const ValueList*>(ptr_.get()); }
  ListKind list_kind() const { return list_kind_; }
  const Dict& dict() const { return *static_cast<const Dict*>(ptr_.get()); }
  std::shared_ptr<const Dict> dict_ptr() const {
    return std::static_pointer_cast<const Dict>(ptr_);
  }
  Object& object() const { return *static_cast<Object*>(const_cast<void*>(ptr_.get())); }
  std::shared_ptr<Object> object_ptr() const {
    return std::static_pointer_cast<Object>(std::const_pointer_cast<void>(ptr_));
  }
  // The reason text of an Undefined (empty for a plain one).
  const std::string& undefined_hint() const;
  ErrorKind undefined_kind() const { return undefined_kind_; }
  // Raises the error an Undefined stands for (UndefinedError or SecurityError).
  [[noreturn]] void FailUndefined() const;
  // Identity of the payload, for `is sameas` on containers and objects.
  const void* identity() const { return ptr_.get(); }
  // Container nesting depth (0 for scalars). Capped so that printing, comparing and freeing
  // values never recurses deeper than the stack allows.
  int depth() const { return depth_; }

 private:
  explicit Value(ValueType t) : type_(t) {}

  ValueType type_;
  ListKind list_kind_ = ListKind::kList;
  ErrorKind undefined_kind_ = ErrorKind::kUndefined;
  uint16_t depth_ = 0;
  union {
    bool b_;
    int64_t i_;
    double f_ = 0;
  };
  std::shared_ptr<const void> ptr_;
};

// Deepest container nesting a value may have.
constexpr int kMaxValueDepth = 800;

// Insertion-ordered mapping like a Python dict; keys are hashable Values (str, numbers, None,
// bool, tuples). Python treats 1, 1.0 and True as the same key; HashKey reproduces that.
class Dict {
 public:
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  const Value* Find(const Value& key) const;
  const Value* FindString(std::string_view key) const;
  void Set(Value key, Value value);

 private:
  std::vector<std::pair<Value, Value>> items_;
  std::unordered_map<std::string, size_t> index_;
};

// Canonical hash key; raises TypeError for unhashable values (list, dict).
std::string HashKey(const Value& v);

// Arguments of a call: positional values and keyword values in call order.
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

// Anything with Python attributes or a __call__: namespace, macro, loop, bound methods, ...
class Object {
 public:
  virtual ~Object() = default;
  // Python type name used in messages ("Namespace", "Macro", ...).
  virtual std::string TypeName() const = 0;
  // str()/repr() of the object.
  virtual std::string Repr() const = 0;
  // Attribute lookup; returns an Undefined when missing.
  virtual Value GetAttr(std::string_view name) const;
  virtual bool IsCallable() const { return false; }
  virtual Value Call(Interpreter& interp, CallArgs& args);
  // Only namespaces accept `{% set ns.attr = value %}`.
  virtual bool IsNamespace() const { return false; }
  virtual void SetAttr(std::string_view name, Value value);
  // Nesting depth of the values the object holds (namespaces hold values).
  virtual int NestingDepth() const { return 0; }
  // Drops held values at the end of a render (breaks reference cycles).
  virtual void ClearForTeardown() {}
};

// Python truthiness (Undefined and empty containers are false; generators are always true).
bool Truthy(const Value& v);
// Python type name for error messages: 'int', 'str', 'list', 'dict', 'NoneType', ...
std::string TypeName(const Value& v);
// str(v) and repr(v) exactly as CPython prints them.
std::string ToStr(const Value& v);
std::string Repr(const Value& v);
// Python == and <; Less raises TypeError for unorderable types.
bool Equal(const Value& a, const Value& b);
bool Less(const Value& a, const Value& b);
// len(); raises TypeError when the value has no length.
size_t Length(const Value& v);
// Materializes an iterable into its items (dict -> keys, str -> characters); raises TypeError.
ValueList Iterate(const Value& v);

}  // namespace gs::jinja
