#include "chat/jinja/objects.h"

#include <algorithm>
#include <ctime>

#include "chat/jinja/args.h"
#include "chat/jinja/py_format.h"
#include "util/str.h"

namespace gs::jinja {

// ---- Namespace ----

std::string Namespace::Repr() const {
  return StrCat("<Namespace ", ToStr(Value::DictValue(attrs_)), ">");
}

Value Namespace::GetAttr(std::string_view name) const {
  if (const Value* v = attrs_.FindString(name)) return *v;
  return Value::Undefined(StrCat("'Namespace object' has no attribute ", StringRepr(name)));
}

Namespace::Namespace(Dict attrs) : attrs_(std::move(attrs)) {
  for (const auto& kv : attrs_.items()) depth_ = std::max(depth_, kv.second.depth());
}

void Namespace::SetAttr(std::string_view name, Value value) {
  if (value.depth() + 1 > kMaxValueDepth) {
    Throw(ErrorKind::kLimit, StrCat("values nested deeper than ", kMaxValueDepth, " levels"));
  }
  depth_ = std::max(depth_, value.depth());
  attrs_.Set(Value::String(std::string(name)), std::move(value));
}

// ---- BoundMethod ----

std::string BoundMethod::Repr() const {
  return StrCat("<built-in method ", name_, " of ", jinja::TypeName(self_), " object>");
}

Value BoundMethod::Call(Interpreter& interp, CallArgs& args) {
  return CallMethod(interp, self_, name_, args);
}

// ---- Macro ----

std::string Macro::Repr() const { return StrCat("<Macro ", StringRepr(name_), ">"); }

Value Macro::GetAttr(std::string_view name) const {
  if (name == "name") return Value::String(name_);
  if (name == "arguments") {
    ValueList names;
    for (const MacroParam& p : def_->params) names.push_back(Value::String(p.name));
    return Value::Tuple(std::move(names));
  }
  if (name == "catch_kwargs") return Value::Bool(def_->uses_kwargs);
  if (name == "catch_varargs") return Value::Bool(def_->uses_varargs);
  if (name == "caller") return Value::Bool(def_->uses_caller);
  return Object::GetAttr(name);
}

Value Macro::Call(Interpreter& interp, CallArgs& args) {
  return interp.InvokeMacro(*def_, closure_, name_, args);
}

// ---- LoopContext ----

std::string LoopContext::Repr() const {
  return StrCat("<LoopContext ", index0_ + 1, "/", items_->size(), ">");
}

Value LoopContext::GetAttr(std::string_view name) const {
  const int64_t n = static_cast<int64_t>(items_->size());
  const int64_t i = static_cast<int64_t>(index0_);
  if (name == "index") return Value::Int(i + 1);
  if (name == "index0") return Value::Int(i);
  if (name == "revindex") return Value::Int(n - i);
  if (name == "revindex0") return Value::Int(n - i - 1);
  if (name == "first") return Value::Bool(i == 0);
  if (name == "last") return Value::Bool(i == n - 1);
  if (name == "length") return Value::Int(n);
  if (name == "depth") return Value::Int(depth_);
  if (name == "depth0") return Value::Int(depth_ - 1);
  if (name == "previtem") {
    return i > 0 ? (*items_)[i - 1] : Value::Undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < n ? (*items_)[i + 1] : Value::Undefined("there is no next item");
  }
  if (name == "cycle") {
    const size_t index0 = index0_;
    return Value::MakeObject(std::make_shared<BuiltinFunction>(
        "cycle", [index0](Interpreter&, CallArgs& args) -> Value {
          if (args.positional.empty()) Throw(ErrorKind::kType, "no items for cycling given");
          return args.positional[index0 % args.positional.size()];
        }));
  }
  if (name == "changed") {
    auto last = last_changed_;
    auto called = changed_called_;
    return Value::MakeObject(std::make_shared<BuiltinFunction>(
        "changed", [last, called](Interpreter&, CallArgs& args) -> Value {
          Value now = Value::Tuple(args.positional);
          if (*called && Equal(*last, now)) return Value::Bool(false);
          *last = now;
          *called = true;
          return Value::Bool(true);
        }));
  }
  return Object::GetAttr(name);
}

Value LoopContext::Call(Interpreter& interp, CallArgs& args) {
  if (!loop_->recursive) {
    Throw(ErrorKind::kType, "The loop must be marked 'recursive' to be called recursively.");
  }
  if (args.positional.size() != 1 || !args.keywords.empty()) {
    Throw(ErrorKind::kType, "loop() takes exactly one argument");
  }
  return interp.RunLoopRecursive(*loop_, frame_, args.positional[0], depth_ + 1);
}

// ---- globals ----

namespace {

int64_t RangeArg(const Value& v) {
  if (v.is_int() || v.is_bool()) return v.to_int();
  if (v.is_undefined()) v.FailUndefined();
  Throw(ErrorKind::kType, StrCat("'", TypeName(v), "' object cannot be interpreted as an integer"));
}

Value Range(Interpreter& interp, CallArgs& args) {
  if (!args.keywords.empty()) Throw(ErrorKind::kType, "range() takes no keyword arguments");
  const ValueList& a = args.positional;
  if (a.empty() || a.size() > 3) {
    Throw(ErrorKind::kType, StrCat("range expected at most 3 arguments, got ", a.size()));
  }
  int64_t start = 0, stop, step = 1;
  if (a.size() == 1) {
    stop = RangeArg(a[0]);
  } else {
    start = RangeArg(a[0]);
    stop = RangeArg(a[1]);
    if (a.size() == 3) step = RangeArg(a[2]);
  }
  if (step == 0) Throw(ErrorKind::kValue, "range() arg 3 must not be zero");
  // jinja2's sandbox refuses ranges longer than MAX_RANGE.
  constexpr int64_t kMaxRange = 100000;
  int64_t count = 0;
  if (step > 0 && start < stop) count = (stop - start + step - 1) / step;
  if (step < 0 && start > stop) count = (start - stop - step - 1) / -step;
  if (count > kMaxRange) {
    Throw(ErrorKind::kOverflow,
          "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  interp.Charge(count);
  ValueList items;
  items.reserve(count);
  for (int64_t i = 0; i < count; ++i) items.push_back(Value::Int(start + i * step));
  return Value::List(std::move(items));
}

// dict(*args, **kwargs) as Python builds it: a mapping or pairs, then keywords.
Dict BuildDict(const CallArgs& args, const char* fname) {
  Dict d;
  if (args.positional.size() > 1) {
    Throw(ErrorKind::kType, StrCat(fname, " expected at most 1 argument, got ",
                                   args.positional.size()));
  }
  if (args.positional.size() == 1) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      d = src.dict();
    } else {
      for (const Value& pair : Iterate(src)) {
        ValueList kv = Iterate(pair);
        if (kv.size() != 2) {
          Throw(ErrorKind::kValue, "dictionary update sequence element has wrong length");
        }
        d.Set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keywords) d.Set(Value::String(k), v);
  return d;
}

class Cycler : public Object {
 public:
  explicit Cycler(ValueList items) : items_(std::move(items)) {}
  std::string TypeName() const override { return "Cycler"; }
  std::string Repr() const override { return "<Cycler>"; }
  Value GetAttr(std::string_view name) const override {
    if (name == "current") return items_[pos_];
    if (name == "next" || name == "reset") {
      Cycler* self = const_cast<Cycler*>(this);
      const bool is_next = name == "next";
      return Value::MakeObject(std::make_shared<BuiltinFunction>(
          std::string(name), [self, is_next](Interpreter&, CallArgs&) -> Value {
            if (!is_next) {
              self->pos_ = 0;
              return Value::None();
            }
            Value v = self->items_[self->pos_];
            self->pos_ = (self->pos_ + 1) % self->items_.size();
            return v;
          }));
    }
    return Object::GetAttr(name);
  }

 private:
  ValueList items_;
  size_t pos_ = 0;
};

std::string Strftime(const std::string& format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::string buf(256 + format.size() * 8, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
  buf.resize(n);
  return buf;
}

void Define(Frame& frame, const std::string& name, BuiltinFunction::Fn fn) {
  frame.vars[name] = Value::MakeObject(std::make_shared<BuiltinFunction>(name, std::move(fn)));
}

}  // namespace

void AddGlobals(Frame& frame) {
  Define(frame, "range", Range);
  Define(frame, "dict", [](Interpreter&, CallArgs& args) {
    return Value::DictValue(BuildDict(args, "dict"));
  });
  Define(frame, "namespace", [](Interpreter& interp, CallArgs& args) {
    auto ns = std::make_shared<Namespace>(BuildDict(args, "namespace"));
    interp.RegisterNamespace(ns);
    return Value::MakeObject(ns);
  });
  Define(frame, "cycler", [](Interpreter&, CallArgs& args) {
    if (args.positional.empty()) Throw(ErrorKind::kRuntime, "at least one item has to be provided");
    return Value::MakeObject(std::make_shared<Cycler>(args.positional));
  });
  Define(frame, "joiner", [](Interpreter&, CallArgs& args) {
    ArgBinder b("joiner", args, {"sep"});
    auto used = std::make_shared<bool>(false);
    const std::string sep = ToStr(b.GetOr(0, Value::String(", ")));
    return Value::MakeObject(std::make_shared<BuiltinFunction>(
        "joiner", [used, sep](Interpreter&, CallArgs&) -> Value {
          if (!*used) {
            *used = true;
            return Value::String("");
          }
          return Value::String(sep);
        }));
  });
  Define(frame, "raise_exception", [](Interpreter&, CallArgs& args) -> Value {
    ArgBinder b("raise_exception", args, {"message"});
    Throw(ErrorKind::kTemplate, ToStr(b.Require(0)));
  });
  Define(frame, "strftime_now", [](Interpreter&, CallArgs& args) {
    ArgBinder b("strftime_now", args, {"format"});
    const Value& f = b.Require(0);
    if (!f.is_string()) Throw(ErrorKind::kType, "strftime() argument 1 must be str");
    return Value::String(Strftime(f.str()));
  });
}

}  // namespace gs::jinja
