// Syntax tree of a parsed template. Nodes carry the line/column of their first token so that
// runtime errors point at the template text.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja/value.h"

namespace gs::jinja {

struct Node {
  int line = 0;
  int col = 0;
};

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  kConst,
  kName,
  kList,
  kTuple,
  kDict,
  kGetAttr,
  kGetItem,
  kSlice,
  kCall,
  kFilter,
  kTest,
  kNot,
  kNeg,
  kPos,
  kBinary,
  kAnd,
  kOr,
  kConcat,
  kCompare,
  kCondExpr,
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Keyword {
  std::string name;
  ExprPtr value;
};

// Arguments as written at a call site: f(a, b, k=v, *args, **kwargs).
struct ArgList {
  std::vector<ExprPtr> positional;
  std::vector<Keyword> keywords;
  ExprPtr star_args;
  ExprPtr star_kwargs;
};

struct Expr : Node {
  explicit Expr(ExprKind k) : kind(k) {}
  ExprKind kind;
  // Generic children; their meaning depends on kind (documented per kind below).
  Value value;                  // kConst
  std::string name;             // kName, kGetAttr attribute, kFilter/kTest name
  std::vector<ExprPtr> items;   // kList, kTuple, kConcat, kDict (key, value, key, value...)
  ExprPtr a;                    // operand / object / left / test / slice start
  ExprPtr b;                    // right / key / then-branch / slice stop
  ExprPtr c;                    // else-branch / slice step
  BinaryOp binary_op = BinaryOp::kAdd;
  std::vector<std::pair<CompareOp, ExprPtr>> comparisons;  // kCompare: a op1 x1 op2 x2 ...
  ArgList args;                 // kCall, kFilter, kTest
};

enum class StmtKind {
  kText,
  kPrint,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kCallBlock,
  kFilterBlock,
  kWith,
  kBreak,
  kContinue,
  kScope,  // a body rendered as is ({% generation %} from transformers' AssistantTracker)
};

// Left side of an assignment or loop target: a name, `ns.attr`, or a (nested) tuple of names.
struct Target : Node {
  enum class Kind { kName, kNamespaceAttr, kTuple } kind = Kind::kName;
  std::string name;
  std::string attr;
  std::vector<Target> items;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null when required
};

struct Stmt : Node {
  explicit Stmt(StmtKind k) : kind(k) {}
  StmtKind kind;
  std::string text;                                // kText
  ExprPtr expr;                                    // print/set value, for iter, call, filter
  ExprPtr cond;                                    // for-loop `if` filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf: (test, body) for if/elif
  Body body;
  Body else_body;
  Target target;                                   // set/for target, set-block name
  bool recursive = false;                          // for ... recursive
  std::string name;                                // macro name
  std::vector<MacroParam> params;                  // macro / caller parameters
  std::vector<ExprPtr> filters;                    // set-block / filter-block filters
  std::vector<std::pair<Target, ExprPtr>> assignments;  // kWith
  // Names referenced inside a macro body, to decide whether it accepts *varargs/**kwargs.
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

}  // namespace gs::jinja
