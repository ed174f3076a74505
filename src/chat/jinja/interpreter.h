// Tree-walking evaluator for parsed templates with jinja2's runtime semantics: Python operators
// and truthiness, jinja2 scoping (loop bodies and macros get their own frames, `if` does not),
// sandboxed attribute/item lookup, and resource limits so that a hostile template cannot hang
// or exhaust memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/jinja/ast.h"
#include "chat/jinja/value.h"

namespace gs::jinja {

struct RenderLimits {
  int64_t max_steps = 50'000'000;        // statements + loop iterations + container work
  int max_call_depth = 100;              // nested macro/caller calls
  size_t max_output_bytes = 64u << 20;   // any single string or output buffer
};

// A variable scope. Frames are shared because macros keep their defining frame alive.
struct Frame {
  explicit Frame(std::shared_ptr<Frame> p) : parent(std::move(p)) {}
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
  const Value* Lookup(const std::string& name) const;
};

using FilterFn = std::function<Value(Interpreter&, const Value&, CallArgs&)>;
using TestFn = std::function<bool(Interpreter&, const Value&, CallArgs&)>;

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, std::shared_ptr<Frame> root);
  // Breaks the reference cycles a render can create (a macro's closure frame holds the macro;
  // a namespace can hold itself), so everything the render allocated is freed.
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  void RegisterNamespace(const std::shared_ptr<Object>& ns) { namespaces_.push_back(ns); }

  // Renders a template body into `out`.
  void Render(const Body& body, std::string& out);

  // Services used by filters, tests, methods and objects.
  Value Call(const Value& callee, CallArgs& args);
  Value ApplyFilter(std::string_view name, const Value& input, CallArgs& args);
  bool ApplyTest(std::string_view name, const Value& input, CallArgs& args);
  Value GetAttr(const Value& obj, std::string_view name);
  Value GetItem(const Value& obj, const Value& key);
  // Charges `units` of work against the step limit.
  void Charge(int64_t units);
  // Raises LimitExceeded when a string grows past max_output_bytes.
  void CheckSize(size_t bytes) const;
  const RenderLimits& limits() const { return limits_; }

  // Executes a macro (or call-block caller) body with bound arguments; returns its output.
  Value InvokeMacro(const Stmt& macro, const std::shared_ptr<Frame>& closure,
                    const std::string& name, CallArgs& args);
  // Runs a for statement over `iterable` (used by recursive loops via loop(...)).
  Value RunLoopRecursive(const Stmt& loop, const std::shared_ptr<Frame>& frame,
                         const Value& iterable, int depth);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow ExecBody(const Body& body, std::string& out);
  Flow Exec(const Stmt& s, std::string& out);
  Flow ExecFor(const Stmt& s, std::string& out, const Value& iterable, int depth);
  void ExecSet(const Stmt& s);
  void Assign(const Target& target, const Value& value, Frame& frame);
  std::string RenderToString(const Body& body);
  Value ApplyFilterChain(const Expr& chain, Value input);

  Value Eval(const Expr& e);
  Value EvalInner(const Expr& e);
  Value EvalCall(const Expr& e);
  Value EvalFilter(const Expr& e);
  Value EvalTest(const Expr& e);
  Value EvalCompare(const Expr& e);
  Value EvalSlice(const Value& obj, const Expr& slice);
  void EvalArgs(const ArgList& list, CallArgs* out);
  Value LookupName(const std::string& name);

  RenderLimits limits_;
  std::shared_ptr<Frame> frame_;
  std::vector<std::weak_ptr<Frame>> macro_frames_;
  std::vector<std::weak_ptr<Object>> namespaces_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;
};

// Registries (filters.cpp, tests.cpp).
const std::unordered_map<std::string, FilterFn>& FilterTable();
const std::unordered_map<std::string, TestFn>& TestTable();

}  // namespace gs::jinja
