// The non-container runtime objects: namespace(), macros, the `loop` variable, builtin
// functions, bound str/dict/list methods, cycler() and joiner().
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "chat/jinja/ast.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/value.h"

namespace gs::jinja {

// jinja2.utils.Namespace: the one object templates may mutate ({% set ns.x = ... %}).
class Namespace : public Object {
 public:
  explicit Namespace(Dict attrs);
  std::string TypeName() const override { return "Namespace"; }
  int NestingDepth() const override { return depth_; }
  void ClearForTeardown() override { attrs_ = Dict(); }
  std::string Repr() const override;
  Value GetAttr(std::string_view name) const override;
  bool IsNamespace() const override { return true; }
  void SetAttr(std::string_view name, Value value) override;

 private:
  Dict attrs_;
  int depth_ = 0;
};

// A Python callable implemented in C++.
class BuiltinFunction : public Object {
 public:
  using Fn = std::function<Value(Interpreter&, CallArgs&)>;
  BuiltinFunction(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string TypeName() const override { return "builtin_function_or_method"; }
  std::string Repr() const override { return "<built-in function " + name_ + ">"; }
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override { return fn_(interp, args); }

 private:
  std::string name_;
  Fn fn_;
};

// `obj.method` for str/dict/list methods; calling it dispatches to methods.cpp.
class BoundMethod : public Object {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  std::string TypeName() const override { return "builtin_function_or_method"; }
  std::string Repr() const override;
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override;

 private:
  Value self_;
  std::string name_;
};

// A {% macro %} (or the `caller` of a {% call %} block) bound to its defining scope.
class Macro : public Object {
 public:
  Macro(const Stmt* def, std::shared_ptr<Frame> closure, std::string name)
      : def_(def), closure_(std::move(closure)), name_(std::move(name)) {}
  std::string TypeName() const override { return "Macro"; }
  std::string Repr() const override;
  Value GetAttr(std::string_view name) const override;
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override;

 private:
  const Stmt* def_;
  std::shared_ptr<Frame> closure_;
  std::string name_;
};

// jinja2.runtime.LoopContext.
class LoopContext : public Object {
 public:
  LoopContext(std::shared_ptr<const ValueList> items, int depth, const Stmt* loop,
              std::shared_ptr<Frame> frame)
      : items_(std::move(items)), depth_(depth), loop_(loop), frame_(std::move(frame)) {}
  std::string TypeName() const override { return "LoopContext"; }
  std::string Repr() const override;
  Value GetAttr(std::string_view name) const override;
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override;  // recursive loops: loop(children)
  void set_index(size_t i) { index0_ = i; }

 private:
  std::shared_ptr<const ValueList> items_;
  size_t index0_ = 0;
  int depth_;
  const Stmt* loop_;
  std::shared_ptr<Frame> frame_;
  std::shared_ptr<Value> last_changed_ = std::make_shared<Value>();
  std::shared_ptr<bool> changed_called_ = std::make_shared<bool>(false);
};

// The template globals transformers' environment provides: range, dict, namespace, cycler,
// joiner, raise_exception, strftime_now.
void AddGlobals(Frame& frame);

// str/dict/list methods (methods.cpp).
enum class MethodLookup { kNone, kSafe, kUnsafe };
MethodLookup FindMethod(const Value& self, std::string_view name);
Value CallMethod(Interpreter& interp, const Value& self, std::string_view name, CallArgs& args);

}  // namespace gs::jinja
