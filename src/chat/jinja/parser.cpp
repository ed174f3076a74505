#include "chat/jinja/parser.h"

#include <initializer_list>

#include "chat/jinja/error.h"
#include "chat/jinja/py_format.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseLimits& limits)
      : tokens_(std::move(tokens)), limits_(limits) {}

  Body ParseAll() {
    Body body = Subparse({});
    if (cur().type != TokenType::kEof) FailUnexpected(cur());
    return body;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(const Token& t, std::string_view op) const {
    return t.type == TokenType::kOperator && t.value == op;
  }
  bool IsName(const Token& t, std::string_view name) const {
    return t.type == TokenType::kName && t.value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(cur(), op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(cur(), name)) return false;
    Next();
    return true;
  }

  static std::string Describe(const Token& t) {
    switch (t.type) {
      case TokenType::kName:
      case TokenType::kOperator: return t.value;
      case TokenType::kString: return "string";
      default: return TokenTypeName(t.type);
    }
  }

  [[noreturn]] void Fail(const Token& t, const std::string& msg) {
    throw JinjaError(ErrorKind::kSyntax, msg, t.line, t.col);
  }
  [[noreturn]] void FailUnexpected(const Token& t) {
    if (t.type == TokenType::kEof) Fail(t, "unexpected end of template");
    Fail(t, StrCat("unexpected ", StringRepr(Describe(t))));
  }

  void ExpectType(TokenType type) {
    if (cur().type != type) {
      if (cur().type == TokenType::kEof) {
        Fail(cur(), StrCat("unexpected end of template, expected '", TokenTypeName(type), "'."));
      }
      Fail(cur(), StrCat("expected token '", TokenTypeName(type), "', got ",
                         StringRepr(Describe(cur()))));
    }
    Next();
  }
  void ExpectOp(std::string_view op) {
    if (!IsOp(cur(), op)) {
      Fail(cur(), StrCat("expected token '", op, "', got ", StringRepr(Describe(cur()))));
    }
    Next();
  }
  std::string ExpectName() {
    if (cur().type != TokenType::kName) {
      Fail(cur(), StrCat("expected token 'name', got ", StringRepr(Describe(cur()))));
    }
    return Next().value;
  }
  void ExpectNameValue(std::string_view name) {
    if (!IsName(cur(), name)) {
      Fail(cur(), StrCat("expected token '", name, "', got ", StringRepr(Describe(cur()))));
    }
    Next();
  }

  // Guards the C++ stack against pathological nesting.
  struct DepthGuard {
    DepthGuard(Parser* p, const Token& t) : p_(p) {
      if (++p_->depth_ > p_->limits_.max_nesting) {
        p_->Fail(t, StrCat("template nesting deeper than ", p_->limits_.max_nesting, " levels"));
      }
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  // Long operator or postfix chains (a.b.c..., x|f|g..., 1+1+1...) build deep trees without
  // recursing in the parser; each link counts as one nesting level, released when the chain ends.
  class ChainGuard {
   public:
    explicit ChainGuard(Parser* p) : p_(p) {}
    ~ChainGuard() { p_->depth_ -= links_; }
    void Extend(const Token& t) {
      ++links_;
      if (++p_->depth_ > p_->limits_.max_nesting) {
        p_->Fail(t, StrCat("expression nested deeper than ", p_->limits_.max_nesting,
                           " levels"));
      }
    }

   private:
    Parser* p_;
    int links_ = 0;
  };

  template <typename T>
  static T At(T node, const Token& t) {
    node->line = t.line;
    node->col = t.col;
    return node;
  }
  static ExprPtr NewExpr(ExprKind kind, const Token& t) {
    return At(std::make_unique<Expr>(kind), t);
  }
  static StmtPtr NewStmt(StmtKind kind, const Token& t) {
    return At(std::make_unique<Stmt>(kind), t);
  }

  // ---- statements ----

  Body Subparse(std::initializer_list<std::string_view> end_tokens) {
    Body body;
    while (cur().type != TokenType::kEof) {
      const Token& t = cur();
      if (t.type == TokenType::kData) {
        StmtPtr s = NewStmt(StmtKind::kText, t);
        s->text = t.value;
        body.push_back(std::move(s));
        Next();
      } else if (t.type == TokenType::kVariableBegin) {
        Next();
        StmtPtr s = NewStmt(StmtKind::kPrint, t);
        s->expr = ParseTuple(true, false, {});
        ExpectType(TokenType::kVariableEnd);
        body.push_back(std::move(s));
      } else if (t.type == TokenType::kBlockBegin) {
        Next();
        for (std::string_view end : end_tokens) {
          if (IsName(cur(), end)) return body;
        }
        body.push_back(ParseStatement());
        ExpectType(TokenType::kBlockEnd);
      } else {
        FailUnexpected(t);
      }
    }
    return body;
  }

  // Body up to one of end_tokens; the end tag's name is left as the current token.
  Body ParseStatements(std::initializer_list<std::string_view> end_tokens, bool drop_needle) {
    SkipOp(":");
    ExpectType(TokenType::kBlockEnd);
    Body body = Subparse(end_tokens);
    if (cur().type == TokenType::kEof) {
      std::string names;
      for (std::string_view e : end_tokens) names += StrCat(names.empty() ? "" : " or ", "'", e, "'");
      Fail(cur(), StrCat("Unexpected end of template. Jinja was looking for the following tags: ",
                         names, "."));
    }
    if (drop_needle) Next();
    return body;
  }

  StmtPtr ParseStatement() {
    const Token& t = cur();
    if (t.type != TokenType::kName) Fail(t, "tag name expected");
    DepthGuard guard(this, t);
    const std::string& tag = t.value;
    if (tag == "if") return ParseIf();
    if (tag == "for") return ParseFor();
    if (tag == "set") return ParseSet();
    if (tag == "macro") return ParseMacro();
    if (tag == "call") return ParseCallBlock();
    if (tag == "filter") return ParseFilterBlock();
    if (tag == "with") return ParseWith();
    if (tag == "print") {
      StmtPtr s = NewStmt(StmtKind::kPrint, Next());
      s->expr = ParseTuple(true, false, {});
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) Fail(t, StrCat("'", tag, "' outside loop"));
      return NewStmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, Next());
    }
    if (tag == "generation") {
      StmtPtr s = NewStmt(StmtKind::kScope, Next());
      s->body = ParseStatements({"endgeneration"}, true);
      return s;
    }
    if (tag == "block" || tag == "extends" || tag == "include" || tag == "import" ||
        tag == "from" || tag == "autoescape") {
      Fail(t, StrCat("the '", tag, "' tag is not supported in chat templates"));
    }
    Fail(t, StrCat("Encountered unknown tag ", StringRepr(tag), "."));
  }

  StmtPtr ParseIf() {
    StmtPtr s = NewStmt(StmtKind::kIf, Next());
    while (true) {
      ExprPtr test = ParseTuple(false, false, {});
      Body body = ParseStatements({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(test), std::move(body));
      const Token& end = Next();
      if (end.value == "elif") continue;
      if (end.value == "else") s->else_body = ParseStatements({"endif"}, true);
      break;
    }
    return s;
  }

  StmtPtr ParseFor() {
    StmtPtr s = NewStmt(StmtKind::kFor, Next());
    s->target = ParseAssignTarget(false, {"in"});
    ExpectNameValue("in");
    s->expr = ParseTuple(false, false, {"recursive"});
    if (SkipName("if")) s->cond = ParseExpression(true);
    s->recursive = SkipName("recursive");
    ++loop_depth_;
    s->body = ParseStatements({"endfor", "else"}, false);
    --loop_depth_;
    if (Next().value == "else") s->else_body = ParseStatements({"endfor"}, true);
    return s;
  }

  StmtPtr ParseSet() {
    const Token& t = Next();
    Target target = ParseAssignTarget(true, {});
    if (SkipOp("=")) {
      StmtPtr s = NewStmt(StmtKind::kSet, t);
      s->target = std::move(target);
      s->expr = ParseTuple(true, false, {});
      return s;
    }
    StmtPtr s = NewStmt(StmtKind::kSetBlock, t);
    s->target = std::move(target);
    if (IsOp(cur(), "|")) s->expr = ParseFilterChain(nullptr, false);
    s->body = ParseStatements({"endset"}, true);
    return s;
  }

  StmtPtr ParseMacro() {
    StmtPtr s = NewStmt(StmtKind::kMacro, Next());
    s->name = ExpectName();
    ParseSignature(s.get());
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = ParseStatements({"endmacro"}, true);
    loop_depth_ = saved_loops;
    ScanSpecialNames(s.get());
    return s;
  }

  void ParseSignature(Stmt* s) {
    ExpectOp("(");
    bool have_default = false;
    while (!IsOp(cur(), ")")) {
      if (!s->params.empty()) ExpectOp(",");
      MacroParam p;
      p.name = ExpectName();
      if (SkipOp("=")) {
        p.default_value = ParseExpression(true);
        have_default = true;
      } else if (have_default) {
        Fail(cur(), "non-default argument follows default argument");
      }
      s->params.push_back(std::move(p));
    }
    ExpectOp(")");
  }

  StmtPtr ParseCallBlock() {
    StmtPtr s = NewStmt(StmtKind::kCallBlock, Next());
    if (IsOp(cur(), "(")) ParseSignature(s.get());
    const Token& call_tok = cur();
    s->expr = ParseExpression(true);
    if (s->expr->kind != ExprKind::kCall) Fail(call_tok, "expected call");
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = ParseStatements({"endcall"}, true);
    loop_depth_ = saved_loops;
    ScanSpecialNames(s.get());
    return s;
  }

  StmtPtr ParseFilterBlock() {
    StmtPtr s = NewStmt(StmtKind::kFilterBlock, Next());
    s->expr = ParseFilterChain(nullptr, true);
    s->body = ParseStatements({"endfilter"}, true);
    return s;
  }

  StmtPtr ParseWith() {
    StmtPtr s = NewStmt(StmtKind::kWith, Next());
    while (cur().type != TokenType::kBlockEnd) {
      if (!s->assignments.empty()) ExpectOp(",");
      Target target = ParseAssignTarget(false, {});
      ExpectOp("=");
      s->assignments.emplace_back(std::move(target), ParseExpression(true));
    }
    s->body = ParseStatements({"endwith"}, true);
    return s;
  }

  Target ParseAssignTarget(bool with_namespace, std::initializer_list<std::string_view> extra_end) {
    const Token& t = cur();
    if (with_namespace && t.type == TokenType::kName && IsOp(look(), ".")) {
      Target target;
      target.line = t.line;
      target.col = t.col;
      target.kind = Target::Kind::kNamespaceAttr;
      target.name = Next().value;
      Next();  // the dot
      target.attr = ExpectName();
      return target;
    }
    return ParseTargetTuple(extra_end);
  }

  // parse_tuple(simplified=True) restricted to what can be assigned: names and tuples of names.
  Target ParseTargetTuple(std::initializer_list<std::string_view> extra_end) {
    const Token& start = cur();
    std::vector<Target> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end)) break;
      items.push_back(ParseTargetPrimary());
      if (IsOp(cur(), ",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (items.empty()) {
        Fail(cur(), StrCat("Expected an expression, got ", StringRepr(Describe(cur()))));
      }
      return std::move(items[0]);
    }
    Target t;
    t.kind = Target::Kind::kTuple;
    t.line = start.line;
    t.col = start.col;
    t.items = std::move(items);
    return t;
  }

  Target ParseTargetPrimary() {
    const Token& t = cur();
    DepthGuard guard(this, t);
    if (t.type == TokenType::kName) {
      if (t.value == "true" || t.value == "false" || t.value == "True" || t.value == "False" ||
          t.value == "none" || t.value == "None") {
        Fail(t, "can't assign to 'const'");
      }
      Target target;
      target.line = t.line;
      target.col = t.col;
      target.name = Next().value;
      return target;
    }
    if (IsOp(t, "(")) {
      Next();
      Target inner = ParseTargetTuple({});
      ExpectOp(")");
      return inner;
    }
    Fail(t, StrCat("can't assign to ", StringRepr(Describe(t))));
  }

  // Records whether a macro/call body refers to caller, varargs or kwargs (jinja2 only accepts
  // extra arguments when the body uses them).
  void ScanSpecialNames(Stmt* s) {
    for (const StmtPtr& st : s->body) ScanStmt(*st, s);
  }
  void ScanStmt(const Stmt& st, Stmt* m) {
    ScanExpr(st.expr.get(), m);
    ScanExpr(st.cond.get(), m);
    for (const auto& [test, body] : st.branches) {
      ScanExpr(test.get(), m);
      for (const StmtPtr& x : body) ScanStmt(*x, m);
    }
    for (const StmtPtr& x : st.body) ScanStmt(*x, m);
    for (const StmtPtr& x : st.else_body) ScanStmt(*x, m);
    for (const ExprPtr& f : st.filters) ScanExpr(f.get(), m);
    for (const auto& [t, e] : st.assignments) ScanExpr(e.get(), m);
    for (const MacroParam& p : st.params) ScanExpr(p.default_value.get(), m);
  }
  void ScanExpr(const Expr* e, Stmt* m) {
    if (!e) return;
    if (e->kind == ExprKind::kName) {
      if (e->name == "varargs") m->uses_varargs = true;
      if (e->name == "kwargs") m->uses_kwargs = true;
      if (e->name == "caller") m->uses_caller = true;
    }
    for (const ExprPtr& x : e->items) ScanExpr(x.get(), m);
    ScanExpr(e->a.get(), m);
    ScanExpr(e->b.get(), m);
    ScanExpr(e->c.get(), m);
    for (const auto& [op, x] : e->comparisons) ScanExpr(x.get(), m);
    for (const ExprPtr& x : e->args.positional) ScanExpr(x.get(), m);
    for (const Keyword& k : e->args.keywords) ScanExpr(k.value.get(), m);
    ScanExpr(e->args.star_args.get(), m);
    ScanExpr(e->args.star_kwargs.get(), m);
  }

  // ---- expressions ----

  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end) const {
    const Token& t = cur();
    if (t.type == TokenType::kVariableEnd || t.type == TokenType::kBlockEnd || IsOp(t, ")")) {
      return true;
    }
    for (std::string_view e : extra_end) {
      if (IsName(t, e)) return true;
    }
    return false;
  }

  ExprPtr ParseTuple(bool with_condexpr, bool explicit_parens,
                     std::initializer_list<std::string_view> extra_end) {
    const Token& start = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end)) break;
      items.push_back(ParseExpression(with_condexpr));
      if (IsOp(cur(), ",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) {
        Fail(cur(), StrCat("Expected an expression, got ", StringRepr(Describe(cur()))));
      }
    }
    ExprPtr e = NewExpr(ExprKind::kTuple, start);
    e->items = std::move(items);
    return e;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    DepthGuard guard(this, cur());
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    const Token& start = cur();
    ExprPtr expr1 = ParseOr();
    ChainGuard chain(this);
    while (IsName(cur(), "if")) {
      chain.Extend(cur());
      Next();
      ExprPtr e = NewExpr(ExprKind::kCondExpr, start);
      e->a = ParseOr();
      e->b = std::move(expr1);
      if (SkipName("else")) e->c = ParseCondExpr();
      expr1 = std::move(e);
    }
    return expr1;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    ChainGuard chain(this);
    while (IsName(cur(), "or")) {
      chain.Extend(cur());
      ExprPtr e = NewExpr(ExprKind::kOr, Next());
      e->a = std::move(left);
      e->b = ParseAnd();
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    ChainGuard chain(this);
    while (IsName(cur(), "and")) {
      chain.Extend(cur());
      ExprPtr e = NewExpr(ExprKind::kAnd, Next());
      e->a = std::move(left);
      e->b = ParseNot();
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName(cur(), "not")) {
      DepthGuard guard(this, cur());
      ExprPtr e = NewExpr(ExprKind::kNot, Next());
      e->a = ParseNot();
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Token& start = cur();
    ExprPtr expr = ParseMath1();
    std::vector<std::pair<CompareOp, ExprPtr>> ops;
    while (true) {
      const Token& t = cur();
      CompareOp op;
      if (IsOp(t, "==")) {
        op = CompareOp::kEq;
      } else if (IsOp(t, "!=")) {
        op = CompareOp::kNe;
      } else if (IsOp(t, "<")) {
        op = CompareOp::kLt;
      } else if (IsOp(t, "<=")) {
        op = CompareOp::kLe;
      } else if (IsOp(t, ">")) {
        op = CompareOp::kGt;
      } else if (IsOp(t, ">=")) {
        op = CompareOp::kGe;
      } else if (IsName(t, "in")) {
        op = CompareOp::kIn;
      } else if (IsName(t, "not") && IsName(look(), "in")) {
        Next();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      Next();
      ops.emplace_back(op, ParseMath1());
    }
    if (ops.empty()) return expr;
    ExprPtr e = NewExpr(ExprKind::kCompare, start);
    e->a = std::move(expr);
    e->comparisons = std::move(ops);
    return e;
  }

  ExprPtr Binary(BinaryOp op, const Token& t, ExprPtr left, ExprPtr right) {
    ExprPtr e = NewExpr(ExprKind::kBinary, t);
    e->binary_op = op;
    e->a = std::move(left);
    e->b = std::move(right);
    return e;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    ChainGuard chain(this);
    while (IsOp(cur(), "+") || IsOp(cur(), "-")) {
      chain.Extend(cur());
      const Token& t = Next();
      left = Binary(t.value == "+" ? BinaryOp::kAdd : BinaryOp::kSub, t, std::move(left),
                    ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    const Token& start = cur();
    ExprPtr first = ParseMath2();
    if (!IsOp(cur(), "~")) return first;
    ExprPtr e = NewExpr(ExprKind::kConcat, start);
    e->items.push_back(std::move(first));
    while (SkipOp("~")) e->items.push_back(ParseMath2());
    return e;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    ChainGuard chain(this);
    while (true) {
      const Token& t = cur();
      BinaryOp op;
      if (IsOp(t, "*")) {
        op = BinaryOp::kMul;
      } else if (IsOp(t, "/")) {
        op = BinaryOp::kDiv;
      } else if (IsOp(t, "//")) {
        op = BinaryOp::kFloorDiv;
      } else if (IsOp(t, "%")) {
        op = BinaryOp::kMod;
      } else {
        break;
      }
      chain.Extend(t);
      Next();
      left = Binary(op, t, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    ChainGuard chain(this);
    while (IsOp(cur(), "**")) {
      chain.Extend(cur());
      const Token& t = Next();
      left = Binary(BinaryOp::kPow, t, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    const Token& t = cur();
    DepthGuard guard(this, t);
    ExprPtr node;
    if (IsOp(t, "-") || IsOp(t, "+")) {
      node = NewExpr(t.value == "-" ? ExprKind::kNeg : ExprKind::kPos, Next());
      node->a = ParseUnary(false);
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = cur();
    DepthGuard guard(this, t);
    if (t.type == TokenType::kName) {
      ExprPtr e;
      if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False") {
        e = NewExpr(ExprKind::kConst, t);
        e->value = Value::Bool(t.value == "true" || t.value == "True");
      } else if (t.value == "none" || t.value == "None") {
        e = NewExpr(ExprKind::kConst, t);
        e->value = Value::None();
      } else {
        e = NewExpr(ExprKind::kName, t);
        e->name = t.value;
      }
      Next();
      return e;
    }
    if (t.type == TokenType::kString) {
      ExprPtr e = NewExpr(ExprKind::kConst, t);
      std::string s;
      while (cur().type == TokenType::kString) s += Next().value;  // adjacent literals join
      e->value = Value::String(std::move(s));
      return e;
    }
    if (t.type == TokenType::kInteger || t.type == TokenType::kFloat) {
      ExprPtr e = NewExpr(ExprKind::kConst, t);
      e->value = t.type == TokenType::kInteger ? Value::Int(t.int_value)
                                               : Value::Float(t.float_value);
      Next();
      return e;
    }
    if (IsOp(t, "(")) {
      Next();
      ExprPtr e = ParseTuple(true, true, {});
      ExpectOp(")");
      return e;
    }
    if (IsOp(t, "[")) return ParseList();
    if (IsOp(t, "{")) return ParseDict();
    FailUnexpected(t);
  }

  ExprPtr ParseList() {
    ExprPtr e = NewExpr(ExprKind::kList, Next());
    while (!IsOp(cur(), "]")) {
      if (!e->items.empty()) ExpectOp(",");
      if (IsOp(cur(), "]")) break;
      e->items.push_back(ParseExpression(true));
    }
    ExpectOp("]");
    return e;
  }

  ExprPtr ParseDict() {
    ExprPtr e = NewExpr(ExprKind::kDict, Next());
    while (!IsOp(cur(), "}")) {
      if (!e->items.empty()) ExpectOp(",");
      if (IsOp(cur(), "}")) break;
      e->items.push_back(ParseExpression(true));
      ExpectOp(":");
      e->items.push_back(ParseExpression(true));
    }
    ExpectOp("}");
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    ChainGuard chain(this);
    while (true) {
      if (IsOp(cur(), ".") || IsOp(cur(), "[")) {
        chain.Extend(cur());
        node = ParseSubscript(std::move(node));
      } else if (IsOp(cur(), "(")) {
        chain.Extend(cur());
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    ChainGuard chain(this);
    while (true) {
      if (IsOp(cur(), "|")) {
        node = ParseFilterChain(std::move(node), false);
      } else if (IsName(cur(), "is")) {
        chain.Extend(cur());
        node = ParseTest(std::move(node));
      } else if (IsOp(cur(), "(")) {
        chain.Extend(cur());
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const Token& t = Next();
    DepthGuard guard(this, t);
    if (t.value == ".") {
      const Token& attr = cur();
      if (attr.type == TokenType::kName) {
        ExprPtr e = NewExpr(ExprKind::kGetAttr, t);
        e->a = std::move(node);
        e->name = Next().value;
        return e;
      }
      if (attr.type != TokenType::kInteger) Fail(attr, "expected name or number");
      ExprPtr key = NewExpr(ExprKind::kConst, attr);
      key->value = Value::Int(Next().int_value);
      ExprPtr e = NewExpr(ExprKind::kGetItem, t);
      e->a = std::move(node);
      e->b = std::move(key);
      return e;
    }
    std::vector<ExprPtr> args;
    while (!IsOp(cur(), "]")) {
      if (!args.empty()) ExpectOp(",");
      args.push_back(ParseSubscribed());
    }
    ExpectOp("]");
    ExprPtr e = NewExpr(ExprKind::kGetItem, t);
    e->a = std::move(node);
    if (args.size() == 1) {
      e->b = std::move(args[0]);
    } else {
      e->b = NewExpr(ExprKind::kTuple, t);
      e->b->items = std::move(args);
    }
    return e;
  }

  ExprPtr ParseSubscribed() {
    const Token& start = cur();
    ExprPtr first;
    if (!IsOp(cur(), ":")) {
      first = ParseExpression(true);
      if (!IsOp(cur(), ":")) return first;
    }
    Next();  // the colon
    ExprPtr e = NewExpr(ExprKind::kSlice, start);
    e->a = std::move(first);
    if (!IsOp(cur(), ":") && !IsOp(cur(), "]") && !IsOp(cur(), ",")) e->b = ParseExpression(true);
    if (SkipOp(":")) {
      if (!IsOp(cur(), "]") && !IsOp(cur(), ",")) e->c = ParseExpression(true);
    }
    return e;
  }

  void ParseCallArgs(ArgList* args) {
    const Token& open = cur();
    ExpectOp("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) Fail(open, "invalid syntax for function call expression");
    };
    while (!IsOp(cur(), ")")) {
      if (require_comma) {
        ExpectOp(",");
        if (IsOp(cur(), ")")) break;
      }
      if (IsOp(cur(), "*")) {
        ensure(!args->star_args && !args->star_kwargs);
        Next();
        args->star_args = ParseExpression(true);
      } else if (IsOp(cur(), "**")) {
        ensure(!args->star_kwargs);
        Next();
        args->star_kwargs = ParseExpression(true);
      } else if (cur().type == TokenType::kName && IsOp(look(), "=")) {
        ensure(!args->star_kwargs);
        Keyword k;
        k.name = Next().value;
        Next();
        k.value = ParseExpression(true);
        args->keywords.push_back(std::move(k));
      } else {
        ensure(!args->star_args && !args->star_kwargs && args->keywords.empty());
        args->positional.push_back(ParseExpression(true));
      }
      require_comma = true;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr node) {
    ExprPtr e = NewExpr(ExprKind::kCall, cur());
    e->a = std::move(node);
    ParseCallArgs(&e->args);
    return e;
  }

  // `| name(args) | name ...`; with start_inline the first filter has no pipe ({% filter %}).
  ExprPtr ParseFilterChain(ExprPtr node, bool start_inline) {
    ChainGuard chain(this);
    while (IsOp(cur(), "|") || start_inline) {
      chain.Extend(cur());
      if (!start_inline) Next();
      start_inline = false;
      const Token& t = cur();
      std::string name = ExpectName();
      while (SkipOp(".")) {
        name += '.';
        name += ExpectName();
      }
      if (!IsKnownFilter(name)) Fail(t, StrCat("No filter named ", StringRepr(name), "."));
      ExprPtr e = NewExpr(ExprKind::kFilter, t);
      e->a = std::move(node);
      e->name = std::move(name);
      if (IsOp(cur(), "(")) ParseCallArgs(&e->args);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const Token& is_tok = Next();
    const bool negated = SkipName("not");
    const Token& name_tok = cur();
    std::string name = ExpectName();
    while (SkipOp(".")) {
        name += '.';
        name += ExpectName();
      }
    if (!IsKnownTest(name)) Fail(name_tok, StrCat("No test named ", StringRepr(name), "."));
    ExprPtr e = NewExpr(ExprKind::kTest, is_tok);
    e->a = std::move(node);
    e->name = std::move(name);
    const Token& t = cur();
    if (IsOp(t, "(")) {
      ParseCallArgs(&e->args);
    } else if ((t.type == TokenType::kName || t.type == TokenType::kString ||
                t.type == TokenType::kInteger || t.type == TokenType::kFloat || IsOp(t, "(") ||
                IsOp(t, "[") || IsOp(t, "{")) &&
               !IsName(t, "else") && !IsName(t, "or") && !IsName(t, "and")) {
      if (IsName(t, "is")) Fail(t, "You cannot chain multiple tests with is");
      e->args.positional.push_back(ParsePostfix(ParsePrimary()));
    }
    if (!negated) return e;
    ExprPtr n = NewExpr(ExprKind::kNot, is_tok);
    n->a = std::move(e);
    return n;
  }

  std::vector<Token> tokens_;
  ParseLimits limits_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body ParseTemplate(std::string_view source, const ParseLimits& limits) {
  return Parser(Tokenize(source), limits).ParseAll();
}

}  // namespace gs::jinja
