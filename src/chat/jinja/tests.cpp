// jinja2's builtin tests (jinja2/tests.py): `x is defined`, `x is mapping`, `n is divisibleby 3`.
#include "chat/jinja/args.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/operators.h"
#include "chat/jinja/parser.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

using Table = std::unordered_map<std::string, TestFn>;

// A test taking only the value.
template <typename F>
TestFn Unary(const char* name, F f) {
  return [name, f](Interpreter&, const Value& v, CallArgs& args) {
    const ArgBinder no_args(name, args, {});
    return f(v);
  };
}

// A test comparing the value with one argument.
template <typename F>
TestFn Binary(const char* name, const char* arg, F f) {
  return [name, arg, f](Interpreter& interp, const Value& v, CallArgs& args) {
    ArgBinder b(name, args, {arg});
    return f(interp, v, b.Require(0));
  };
}

Value Mod(Interpreter& interp, const Value& v, int64_t m) {
  return BinaryOperation(interp, BinaryOp::kMod, v, Value::Int(m));
}

bool IsSequence(const Value& v) {
  // len() and __getitem__ both exist: str, list, tuple, dict and Undefined qualify.
  switch (v.type()) {
    case ValueType::kUndefined:
    case ValueType::kString:
    case ValueType::kDict: return true;
    case ValueType::kList: return v.is_sequence_list();
    default: return false;
  }
}

bool IsIterable(const Value& v) {
  switch (v.type()) {
    case ValueType::kUndefined:
    case ValueType::kString:
    case ValueType::kList:
    case ValueType::kDict: return true;
    default: return false;
  }
}

bool SameAs(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case ValueType::kNone:
    case ValueType::kUndefined: return true;
    case ValueType::kBool: return a.as_bool() == b.as_bool();
    case ValueType::kInt: return a.as_int() == b.as_int();  // CPython caches small ints
    case ValueType::kFloat: return false;
    default: return a.identity() == b.identity();
  }
}

const Table& BuildTable() {
  static const Table kTable = [] {
    Table t;
    t["defined"] = Unary("defined", [](const Value& v) { return !v.is_undefined(); });
    t["undefined"] = Unary("undefined", [](const Value& v) { return v.is_undefined(); });
    t["none"] = Unary("none", [](const Value& v) { return v.is_none(); });
    t["boolean"] = Unary("boolean", [](const Value& v) { return v.is_bool(); });
    t["true"] = Unary("true", [](const Value& v) { return v.is_bool() && v.as_bool(); });
    t["false"] = Unary("false", [](const Value& v) { return v.is_bool() && !v.as_bool(); });
    t["integer"] = Unary("integer", [](const Value& v) { return v.is_int(); });
    t["float"] = Unary("float", [](const Value& v) { return v.is_float(); });
    t["number"] = Unary("number", [](const Value& v) { return v.is_number(); });
    t["string"] = Unary("string", [](const Value& v) { return v.is_string(); });
    t["mapping"] = Unary("mapping", [](const Value& v) { return v.is_dict(); });
    t["sequence"] = Unary("sequence", IsSequence);
    t["iterable"] = Unary("iterable", IsIterable);
    t["callable"] = Unary("callable", [](const Value& v) {
      return v.is_undefined() || (v.is_object() && v.object().IsCallable());
    });
    t["lower"] = Unary("lower", [](const Value& v) { return PyIsLower(ToStr(v)); });
    t["upper"] = Unary("upper", [](const Value& v) { return PyIsUpper(ToStr(v)); });
    t["escaped"] = Unary("escaped", [](const Value&) { return false; });
    t["odd"] = [](Interpreter& i, const Value& v, CallArgs& args) {
      ArgBinder("odd", args, {});
      return Equal(Mod(i, v, 2), Value::Int(1));
    };
    t["even"] = [](Interpreter& i, const Value& v, CallArgs& args) {
      ArgBinder("even", args, {});
      return Equal(Mod(i, v, 2), Value::Int(0));
    };
    t["divisibleby"] = Binary("divisibleby", "num", [](Interpreter& i, const Value& v,
                                                       const Value& n) {
      return Equal(BinaryOperation(i, BinaryOp::kMod, v, n), Value::Int(0));
    });
    t["sameas"] = Binary("sameas", "other",
                         [](Interpreter&, const Value& v, const Value& o) { return SameAs(v, o); });
    t["in"] = Binary("in", "seq",
                     [](Interpreter&, const Value& v, const Value& s) { return Contains(s, v); });
    auto eq = Binary("eq", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return Equal(a, b); });
    auto ne = Binary("ne", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return !Equal(a, b); });
    auto lt = Binary("lt", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return Less(a, b); });
    auto le = Binary("le", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return !Less(b, a); });
    auto gt = Binary("gt", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return Less(b, a); });
    auto ge = Binary("ge", "other",
                     [](Interpreter&, const Value& a, const Value& b) { return !Less(a, b); });
    for (const char* n : {"eq", "equalto", "=="}) t[n] = eq;
    for (const char* n : {"ne", "!="}) t[n] = ne;
    for (const char* n : {"lt", "lessthan", "<"}) t[n] = lt;
    for (const char* n : {"le", "<="}) t[n] = le;
    for (const char* n : {"gt", "greaterthan", ">"}) t[n] = gt;
    for (const char* n : {"ge", ">="}) t[n] = ge;
    t["filter"] = Unary("filter", [](const Value& v) {
      return v.is_string() && IsKnownFilter(v.str());
    });
    t["test"] = Unary("test", [](const Value& v) { return v.is_string() && IsKnownTest(v.str()); });
    return t;
  }();
  return kTable;
}

}  // namespace

const std::unordered_map<std::string, TestFn>& TestTable() { return BuildTable(); }

bool IsKnownTest(std::string_view name) { return TestTable().count(std::string(name)) != 0; }

}  // namespace gs::jinja
