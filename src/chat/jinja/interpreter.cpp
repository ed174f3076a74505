#include "chat/jinja/interpreter.h"

#include "chat/jinja/objects.h"
#include "chat/jinja/operators.h"
#include "chat/jinja/py_format.h"
#include "util/str.h"

namespace gs::jinja {

const Value* Frame::Lookup(const std::string& name) const {
  for (const Frame* f = this; f; f = f->parent.get()) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return &it->second;
  }
  return nullptr;
}

namespace {

// Restores the interpreter's current frame when a scope ends (also on errors).
class FrameSwap {
 public:
  FrameSwap(std::shared_ptr<Frame>& slot, std::shared_ptr<Frame> next)
      : slot_(slot), saved_(slot) {
    slot_ = std::move(next);
  }
  ~FrameSwap() { slot_ = std::move(saved_); }

 private:
  std::shared_ptr<Frame>& slot_;
  std::shared_ptr<Frame> saved_;
};

Value UnsafeAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined(StrCat("access to attribute ", StringRepr(name), " of ",
                                 StringRepr(TypeName(obj)), " object is unsafe."),
                          ErrorKind::kSecurity);
}

}  // namespace

Interpreter::Interpreter(const RenderLimits& limits, std::shared_ptr<Frame> root)
    : limits_(limits), frame_(std::move(root)) {}

Interpreter::~Interpreter() {
  for (auto& weak : namespaces_) {
    if (auto ns = weak.lock()) ns->ClearForTeardown();
  }
  for (auto& weak : macro_frames_) {
    if (auto f = weak.lock()) f->vars.clear();
  }
}

void Interpreter::Render(const Body& body, std::string& out) { ExecBody(body, out); }

void Interpreter::Charge(int64_t units) {
  steps_ += units;
  if (steps_ > limits_.max_steps) {
    Throw(ErrorKind::kLimit,
          StrCat("template exceeded the limit of ", limits_.max_steps, " evaluation steps"));
  }
}

void Interpreter::CheckSize(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    Throw(ErrorKind::kLimit,
          StrCat("template produced a string larger than ", limits_.max_output_bytes, " bytes"));
  }
}

// ---- statements ----

Interpreter::Flow Interpreter::ExecBody(const Body& body, std::string& out) {
  for (const StmtPtr& s : body) {
    Charge(1);
    Flow f;
    try {
      f = Exec(*s, out);
    } catch (JinjaError& e) {
      if (!e.has_location()) e.SetLocation(s->line, s->col);
      throw;
    }
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

std::string Interpreter::RenderToString(const Body& body) {
  std::string buf;
  ExecBody(body, buf);
  return buf;
}

Interpreter::Flow Interpreter::Exec(const Stmt& s, std::string& out) {
  switch (s.kind) {
    case StmtKind::kText:
      out += s.text;
      CheckSize(out.size());
      return Flow::kNormal;
    case StmtKind::kPrint:
      out += ToStr(Eval(*s.expr));
      CheckSize(out.size());
      return Flow::kNormal;
    case StmtKind::kIf:
      for (const auto& [test, body] : s.branches) {
        if (Truthy(Eval(*test))) return ExecBody(body, out);
      }
      return ExecBody(s.else_body, out);
    case StmtKind::kFor: return ExecFor(s, out, Eval(*s.expr), 1);
    case StmtKind::kSet: Assign(s.target, Eval(*s.expr), *frame_); return Flow::kNormal;
    case StmtKind::kSetBlock: {
      Value v = Value::String(RenderToString(s.body));
      if (s.expr) v = ApplyFilterChain(*s.expr, std::move(v));
      Assign(s.target, v, *frame_);
      return Flow::kNormal;
    }
    case StmtKind::kMacro:
      frame_->vars[s.name] = Value::MakeObject(std::make_shared<Macro>(&s, frame_, s.name));
      macro_frames_.push_back(frame_);
      return Flow::kNormal;
    case StmtKind::kCallBlock: {
      // {% call m(...) %}body{% endcall %} is m(..., caller=<macro rendering body>).
      const Expr& call = *s.expr;
      Value callee = Eval(*call.a);
      CallArgs args;
      EvalArgs(call.args, &args);
      args.keywords.emplace_back(
          "caller", Value::MakeObject(std::make_shared<Macro>(&s, frame_, "caller")));
      out += ToStr(Call(callee, args));
      CheckSize(out.size());
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock:
      out += ToStr(ApplyFilterChain(*s.expr, Value::String(RenderToString(s.body))));
      CheckSize(out.size());
      return Flow::kNormal;
    case StmtKind::kWith: {
      auto scope = std::make_shared<Frame>(frame_);
      for (const auto& [target, value] : s.assignments) Assign(target, Eval(*value), *scope);
      FrameSwap swap(frame_, scope);
      return ExecBody(s.body, out);
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
    case StmtKind::kScope: return ExecBody(s.body, out);
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::ExecFor(const Stmt& s, std::string& out, const Value& iterable,
                                       int depth) {
  ValueList all = Iterate(iterable);
  Charge(static_cast<int64_t>(all.size()));
  auto items = std::make_shared<ValueList>();
  if (s.cond) {
    // `for x in xs if cond`: the filter runs before the loop, so loop.length counts survivors.
    for (Value& v : all) {
      auto probe = std::make_shared<Frame>(frame_);
      Assign(s.target, v, *probe);
      FrameSwap swap(frame_, probe);
      if (Truthy(Eval(*s.cond))) items->push_back(std::move(v));
    }
  } else {
    *items = std::move(all);
  }
  if (items->empty()) return ExecBody(s.else_body, out);
  std::shared_ptr<Frame> parent = frame_;
  auto loop = std::make_shared<LoopContext>(items, depth, &s, parent);
  const Value loop_value = Value::MakeObject(loop);
  for (size_t i = 0; i < items->size(); ++i) {
    Charge(1);
    // Each iteration gets a fresh scope: names set in one iteration do not survive to the next.
    auto scope = std::make_shared<Frame>(parent);
    Assign(s.target, (*items)[i], *scope);
    scope->vars["loop"] = loop_value;
    loop->set_index(i);
    FrameSwap swap(frame_, scope);
    if (ExecBody(s.body, out) == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Value Interpreter::RunLoopRecursive(const Stmt& loop, const std::shared_ptr<Frame>& frame,
                                    const Value& iterable, int depth) {
  if (++call_depth_ > limits_.max_call_depth) {
    Throw(ErrorKind::kLimit, StrCat("recursion deeper than ", limits_.max_call_depth, " calls"));
  }
  std::string buf;
  {
    FrameSwap swap(frame_, frame);
    ExecFor(loop, buf, iterable, depth);
  }
  --call_depth_;
  return Value::String(std::move(buf));
}

void Interpreter::Assign(const Target& target, const Value& value, Frame& frame) {
  switch (target.kind) {
    case Target::Kind::kName: frame.vars[target.name] = value; return;
    case Target::Kind::kNamespaceAttr: {
      const Value* ns = frame.Lookup(target.name);
      if (!ns || !ns->is_object() || !ns->object().IsNamespace()) {
        throw JinjaError(ErrorKind::kRuntime, "cannot assign attribute on non-namespace object",
                         target.line, target.col);
      }
      ns->object().SetAttr(target.attr, value);
      return;
    }
    case Target::Kind::kTuple: {
      ValueList items = Iterate(value);
      const size_t want = target.items.size();
      if (items.size() > want) {
        Throw(ErrorKind::kValue, StrCat("too many values to unpack (expected ", want, ")"));
      }
      if (items.size() < want) {
        Throw(ErrorKind::kValue, StrCat("not enough values to unpack (expected ", want,
                                        ", got ", items.size(), ")"));
      }
      for (size_t i = 0; i < want; ++i) Assign(target.items[i], items[i], frame);
      return;
    }
  }
}

Value Interpreter::InvokeMacro(const Stmt& def, const std::shared_ptr<Frame>& closure,
                               const std::string& name, CallArgs& args) {
  if (call_depth_ + 1 > limits_.max_call_depth) {
    Throw(ErrorKind::kLimit,
          StrCat("macro recursion deeper than ", limits_.max_call_depth, " calls"));
  }
  Charge(1);
  auto scope = std::make_shared<Frame>(closure);
  const size_t argc = def.params.size();
  std::vector<bool> bound(argc, false);
  const size_t npos = std::min(argc, args.positional.size());
  for (size_t i = 0; i < npos; ++i) {
    scope->vars[def.params[i].name] = args.positional[i];
    bound[i] = true;
  }
  auto kwargs = args.keywords;
  // As in jinja2's Macro.__call__, keywords only fill parameters positionals left open.
  if (npos != argc) {
    for (size_t i = npos; i < argc; ++i) {
      for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
        if (it->first != def.params[i].name) continue;
        scope->vars[def.params[i].name] = it->second;
        bound[i] = true;
        kwargs.erase(it);
        break;
      }
    }
  }
  if (def.uses_caller) {
    Value caller = Value::Undefined("No caller defined");
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
      if (it->first != "caller") continue;
      caller = it->second;
      kwargs.erase(it);
      break;
    }
    scope->vars["caller"] = caller;
  }
  if (def.uses_kwargs) {
    Dict d;
    for (auto& [k, v] : kwargs) d.Set(Value::String(k), v);
    scope->vars["kwargs"] = Value::DictValue(std::move(d));
  } else if (!kwargs.empty()) {
    Throw(ErrorKind::kType, StrCat("macro ", StringRepr(name), " takes no keyword argument ",
                                   StringRepr(kwargs.front().first)));
  }
  if (def.uses_varargs) {
    ValueList extra;
    for (size_t i = argc; i < args.positional.size(); ++i) extra.push_back(args.positional[i]);
    scope->vars["varargs"] = Value::Tuple(std::move(extra));
  } else if (args.positional.size() > argc) {
    Throw(ErrorKind::kType, StrCat("macro ", StringRepr(name), " takes not more than ", argc,
                                   " argument(s)"));
  }
  ++call_depth_;
  std::string out;
  {
    FrameSwap swap(frame_, scope);
    for (size_t i = 0; i < argc; ++i) {
      if (bound[i]) continue;
      const MacroParam& p = def.params[i];
      scope->vars[p.name] =
          p.default_value ? Eval(*p.default_value)
                          : Value::Undefined(StrCat("parameter ", StringRepr(p.name),
                                                    " was not provided"));
    }
    ExecBody(def.body, out);
  }
  --call_depth_;
  return Value::String(std::move(out));
}

// ---- expressions ----

Value Interpreter::Eval(const Expr& e) {
  // Bounds the C++ stack across macro recursion times expression nesting.
  constexpr int kMaxEvalDepth = 1500;
  struct DepthGuard {
    explicit DepthGuard(int& d) : d_(d) { ++d_; }
    ~DepthGuard() { --d_; }
    int& d_;
  } guard(eval_depth_);
  try {
    if (eval_depth_ > kMaxEvalDepth) {
      Throw(ErrorKind::kLimit, StrCat("expression evaluation nested deeper than ",
                                      kMaxEvalDepth, " levels"));
    }
    return EvalInner(e);
  } catch (JinjaError& err) {
    if (!err.has_location()) err.SetLocation(e.line, e.col);
    throw;
  }
}

Value Interpreter::LookupName(const std::string& name) {
  if (const Value* v = frame_->Lookup(name)) return *v;
  return Value::UndefinedName(name);
}

Value Interpreter::EvalInner(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kConst: return e.value;
    case ExprKind::kName: return LookupName(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList items;
      items.reserve(e.items.size());
      for (const ExprPtr& x : e.items) items.push_back(Eval(*x));
      Charge(static_cast<int64_t>(items.size()));
      return Value::List(std::move(items),
                         e.kind == ExprKind::kTuple ? ListKind::kTuple : ListKind::kList);
    }
    case ExprKind::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        Value k = Eval(*e.items[i]);
        d.Set(std::move(k), Eval(*e.items[i + 1]));
      }
      Charge(static_cast<int64_t>(d.size()));
      return Value::DictValue(std::move(d));
    }
    case ExprKind::kGetAttr: return GetAttr(Eval(*e.a), e.name);
    case ExprKind::kGetItem: {
      Value obj = Eval(*e.a);
      if (e.b->kind == ExprKind::kSlice) return EvalSlice(obj, *e.b);
      return GetItem(obj, Eval(*e.b));
    }
    case ExprKind::kSlice: Throw(ErrorKind::kRuntime, "slice outside of a subscript");
    case ExprKind::kCall: return EvalCall(e);
    case ExprKind::kFilter: return EvalFilter(e);
    case ExprKind::kTest: return EvalTest(e);
    case ExprKind::kNot: return Value::Bool(!Truthy(Eval(*e.a)));
    case ExprKind::kNeg: return UnaryMinus(Eval(*e.a));
    case ExprKind::kPos: return UnaryPlus(Eval(*e.a));
    case ExprKind::kBinary: {
      Value a = Eval(*e.a);
      Value b = Eval(*e.b);
      return BinaryOperation(*this, e.binary_op, a, b);
    }
    case ExprKind::kAnd: {
      Value a = Eval(*e.a);
      return Truthy(a) ? Eval(*e.b) : a;
    }
    case ExprKind::kOr: {
      Value a = Eval(*e.a);
      return Truthy(a) ? a : Eval(*e.b);
    }
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& x : e.items) {
        out += ToStr(Eval(*x));
        CheckSize(out.size());
      }
      return Value::String(std::move(out));
    }
    case ExprKind::kCompare: return EvalCompare(e);
    case ExprKind::kCondExpr:
      if (Truthy(Eval(*e.a))) return Eval(*e.b);
      if (e.c) return Eval(*e.c);
      return Value::Undefined(StrCat("the inline if-expression on line ", e.line,
                                     " evaluated to false and no else section was defined."));
  }
  return Value();
}

Value Interpreter::EvalCompare(const Expr& e) {
  Value left = Eval(*e.a);
  for (const auto& [op, expr] : e.comparisons) {
    Value right = Eval(*expr);
    bool ok = false;
    switch (op) {
      case CompareOp::kEq: ok = Equal(left, right); break;
      case CompareOp::kNe: ok = !Equal(left, right); break;
      case CompareOp::kLt: ok = Less(left, right); break;
      case CompareOp::kLe: ok = !Less(right, left); break;
      case CompareOp::kGt: ok = Less(right, left); break;
      case CompareOp::kGe: ok = !Less(left, right); break;
      case CompareOp::kIn: ok = Contains(right, left); break;
      case CompareOp::kNotIn: ok = !Contains(right, left); break;
    }
    if (!ok) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

Value Interpreter::EvalSlice(const Value& obj, const Expr& slice) {
  if (obj.is_undefined()) obj.FailUndefined();
  Value start = slice.a ? Eval(*slice.a) : Value::None();
  Value stop = slice.b ? Eval(*slice.b) : Value::None();
  Value step = slice.c ? Eval(*slice.c) : Value::None();
  if (std::optional<Value> v = SliceSequence(obj, start, stop, step)) return *v;
  return Value::Undefined(StrCat("'", TypeName(obj), " object' has no element slice(",
                                 Repr(start), ", ", Repr(stop), ", ", Repr(step), ")"));
}

void Interpreter::EvalArgs(const ArgList& list, CallArgs* out) {
  for (const ExprPtr& x : list.positional) out->positional.push_back(Eval(*x));
  if (list.star_args) {
    for (Value& v : Iterate(Eval(*list.star_args))) out->positional.push_back(std::move(v));
  }
  for (const Keyword& k : list.keywords) out->keywords.emplace_back(k.name, Eval(*k.value));
  if (list.star_kwargs) {
    Value d = Eval(*list.star_kwargs);
    if (!d.is_dict()) {
      Throw(ErrorKind::kType, StrCat("argument after ** must be a mapping, not ", TypeName(d)));
    }
    for (const auto& [k, v] : d.dict().items()) {
      if (!k.is_string()) Throw(ErrorKind::kType, "keywords must be strings");
      out->keywords.emplace_back(k.str(), v);
    }
  }
}

Value Interpreter::EvalCall(const Expr& e) {
  Value callee = Eval(*e.a);
  CallArgs args;
  EvalArgs(e.args, &args);
  return Call(callee, args);
}

Value Interpreter::Call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) callee.FailUndefined();
  if (callee.is_object() && callee.object().IsCallable()) {
    Charge(1);
    return callee.object().Call(*this, args);
  }
  Throw(ErrorKind::kType, StrCat("'", TypeName(callee), "' object is not callable"));
}

Value Interpreter::EvalFilter(const Expr& e) {
  Value input = Eval(*e.a);
  CallArgs args;
  EvalArgs(e.args, &args);
  return ApplyFilter(e.name, input, args);
}

Value Interpreter::ApplyFilterChain(const Expr& chain, Value input) {
  if (chain.a) input = ApplyFilterChain(*chain.a, std::move(input));
  CallArgs args;
  EvalArgs(chain.args, &args);
  try {
    return ApplyFilter(chain.name, input, args);
  } catch (JinjaError& err) {
    if (!err.has_location()) err.SetLocation(chain.line, chain.col);
    throw;
  }
}

Value Interpreter::ApplyFilter(std::string_view name, const Value& input, CallArgs& args) {
  const auto& table = FilterTable();
  auto it = table.find(std::string(name));
  if (it == table.end()) Throw(ErrorKind::kRuntime, StrCat("No filter named '", name, "'."));
  Charge(1 + (input.is_list() ? static_cast<int64_t>(input.list().size()) : 0));
  return it->second(*this, input, args);
}

Value Interpreter::EvalTest(const Expr& e) {
  Value input = Eval(*e.a);
  CallArgs args;
  EvalArgs(e.args, &args);
  return Value::Bool(ApplyTest(e.name, input, args));
}

bool Interpreter::ApplyTest(std::string_view name, const Value& input, CallArgs& args) {
  const auto& table = TestTable();
  auto it = table.find(std::string(name));
  if (it == table.end()) Throw(ErrorKind::kRuntime, StrCat("No test named '", name, "'."));
  Charge(1);
  return it->second(*this, input, args);
}

Value Interpreter::GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) obj.FailUndefined();
  switch (FindMethod(obj, name)) {
    case MethodLookup::kSafe:
      return Value::MakeObject(std::make_shared<BoundMethod>(obj, std::string(name)));
    case MethodLookup::kUnsafe: return UnsafeAttribute(obj, name);
    case MethodLookup::kNone: break;
  }
  if (obj.is_object()) return obj.object().GetAttr(name);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().FindString(name)) return *v;
  }
  return Value::UndefinedMember(obj, Value::String(std::string(name)));
}

Value Interpreter::GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) obj.FailUndefined();
  if (obj.is_dict()) {
    const Value* v = nullptr;
    try {
      v = obj.dict().Find(key);
    } catch (const JinjaError&) {
      v = nullptr;  // unhashable key: Python raises TypeError, which jinja2 turns into Undefined
    }
    if (v) return *v;
  } else if (std::optional<Value> v = IndexSequence(obj, key)) {
    return *v;
  }
  // jinja2 falls back to attribute lookup for string keys (so d['items'] finds dict.items).
  if (key.is_string()) {
    switch (FindMethod(obj, key.str())) {
      case MethodLookup::kSafe:
        return Value::MakeObject(std::make_shared<BoundMethod>(obj, key.str()));
      case MethodLookup::kUnsafe: return UnsafeAttribute(obj, key.str());
      case MethodLookup::kNone: break;
    }
    if (obj.is_object()) return obj.object().GetAttr(key.str());
  }
  return Value::UndefinedMember(obj, key);
}

}  // namespace gs::jinja
