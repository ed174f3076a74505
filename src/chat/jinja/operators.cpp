#include "chat/jinja/operators.h"

#include <cmath>
#include <limits>

#include "chat/jinja/interpreter.h"
#include "chat/jinja/unicode.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

const char* OpSymbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return "+";
    case BinaryOp::kSub: return "-";
    case BinaryOp::kMul: return "*";
    case BinaryOp::kDiv: return "/";
    case BinaryOp::kFloorDiv: return "//";
    case BinaryOp::kMod: return "%";
    case BinaryOp::kPow: return "** or pow()";
  }
  return "?";
}

[[noreturn]] void Unsupported(BinaryOp op, const Value& a, const Value& b) {
  Throw(ErrorKind::kType, StrCat("unsupported operand type(s) for ", OpSymbol(op), ": '",
                                 TypeName(a), "' and '", TypeName(b), "'"));
}

[[noreturn]] void IntOverflow() {
  Throw(ErrorKind::kOverflow, "integer result does not fit in 64 bits");
}

bool IsIntLike(const Value& v) { return v.is_int() || v.is_bool(); }

int64_t FloorDivInt(int64_t a, int64_t b) {
  if (b == 0) Throw(ErrorKind::kZeroDivision, "integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) IntOverflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t ModInt(int64_t a, int64_t b) {
  if (b == 0) Throw(ErrorKind::kZeroDivision, "integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// CPython's float divmod (Objects/floatobject.c).
void FloatDivMod(double vx, double wx, double* floordiv, double* mod_out) {
  double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod_out = mod;
}

Value Repeat(Interpreter& interp, const Value& seq, int64_t times) {
  if (times <= 0) return seq.is_string() ? Value::String("") : Value::List({}, seq.list_kind());
  if (seq.is_string()) {
    interp.CheckSize(seq.str().size() * static_cast<size_t>(std::min<int64_t>(times, 1 << 30)));
    std::string out;
    out.reserve(seq.str().size() * times);
    for (int64_t i = 0; i < times; ++i) out += seq.str();
    return Value::String(std::move(out));
  }
  const size_t n = seq.list().size() * static_cast<size_t>(std::min<int64_t>(times, 1 << 30));
  interp.CheckSize(n * sizeof(Value));
  interp.Charge(static_cast<int64_t>(n));
  ValueList out;
  out.reserve(n);
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
  return Value::List(std::move(out), seq.list_kind());
}

Value IntPow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) IntOverflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) IntOverflow();
  }
  return Value::Int(result);
}

}  // namespace

Value BinaryOperation(Interpreter& interp, BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) a.FailUndefined();
  if (b.is_undefined()) b.FailUndefined();
  if (a.is_number() && b.is_number()) {
    const bool ints = IsIntLike(a) && IsIntLike(b);
    const int64_t x = ints ? a.to_int() : 0, y = ints ? b.to_int() : 0;
    const double fx = a.to_double(), fy = b.to_double();
    int64_t r;
    switch (op) {
      case BinaryOp::kAdd:
        if (!ints) return Value::Float(fx + fy);
        if (__builtin_add_overflow(x, y, &r)) IntOverflow();
        return Value::Int(r);
      case BinaryOp::kSub:
        if (!ints) return Value::Float(fx - fy);
        if (__builtin_sub_overflow(x, y, &r)) IntOverflow();
        return Value::Int(r);
      case BinaryOp::kMul:
        if (!ints) return Value::Float(fx * fy);
        if (__builtin_mul_overflow(x, y, &r)) IntOverflow();
        return Value::Int(r);
      case BinaryOp::kDiv:
        if (fy == 0) {
          Throw(ErrorKind::kZeroDivision, ints ? "division by zero" : "float division by zero");
        }
        return Value::Float(fx / fy);
      case BinaryOp::kFloorDiv:
      case BinaryOp::kMod: {
        if (ints) {
          return Value::Int(op == BinaryOp::kFloorDiv ? FloorDivInt(x, y) : ModInt(x, y));
        }
        if (fy == 0) {
          Throw(ErrorKind::kZeroDivision,
                op == BinaryOp::kFloorDiv ? "float floor division by zero" : "float modulo");
        }
        double fd, mod;
        FloatDivMod(fx, fy, &fd, &mod);
        return Value::Float(op == BinaryOp::kFloorDiv ? fd : mod);
      }
      case BinaryOp::kPow:
        if (ints && y >= 0) return IntPow(x, y);
        if (fx == 0 && fy < 0) {
          Throw(ErrorKind::kZeroDivision, "0.0 cannot be raised to a negative power");
        }
        if (fx < 0 && fy != std::floor(fy)) {
          Throw(ErrorKind::kValue, "negative number raised to a fractional power is complex");
        }
        return Value::Float(std::pow(fx, fy));
    }
  }
  if (op == BinaryOp::kAdd) {
    if (a.is_string() && b.is_string()) {
      interp.CheckSize(a.str().size() + b.str().size());
      return Value::String(a.str() + b.str());
    }
    if (a.is_sequence_list() && b.is_sequence_list() && a.list_kind() == b.list_kind()) {
      ValueList out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      interp.Charge(static_cast<int64_t>(out.size()));
      return Value::List(std::move(out), a.list_kind());
    }
    if (a.is_string()) {
      Throw(ErrorKind::kType,
            StrCat("can only concatenate str (not \"", TypeName(b), "\") to str"));
    }
    if (a.is_sequence_list()) {
      Throw(ErrorKind::kType, StrCat("can only concatenate ", TypeName(a), " (not \"",
                                     TypeName(b), "\") to ", TypeName(a)));
    }
  }
  if (op == BinaryOp::kMul) {
    if ((a.is_string() || a.is_sequence_list()) && IsIntLike(b)) return Repeat(interp, a, b.to_int());
    if ((b.is_string() || b.is_sequence_list()) && IsIntLike(a)) return Repeat(interp, b, a.to_int());
  }
  if (op == BinaryOp::kMod && a.is_string()) {
    Throw(ErrorKind::kType, "printf-style '%' string formatting is not supported");
  }
  Unsupported(op, a, b);
}

Value UnaryMinus(const Value& v) {
  if (v.is_undefined()) v.FailUndefined();
  if (IsIntLike(v)) {
    if (v.to_int() == std::numeric_limits<int64_t>::min()) IntOverflow();
    return Value::Int(-v.to_int());
  }
  if (v.is_float()) return Value::Float(-v.as_float());
  Throw(ErrorKind::kType, StrCat("bad operand type for unary -: '", TypeName(v), "'"));
}

Value UnaryPlus(const Value& v) {
  if (v.is_undefined()) v.FailUndefined();
  if (IsIntLike(v)) return Value::Int(v.to_int());
  if (v.is_float()) return v;
  Throw(ErrorKind::kType, StrCat("bad operand type for unary +: '", TypeName(v), "'"));
}

bool Contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case ValueType::kUndefined: return false;
    case ValueType::kString:
      if (!item.is_string()) {
        Throw(ErrorKind::kType, StrCat("'in <string>' requires string as left operand, not ",
                                       TypeName(item)));
      }
      return container.str().find(item.str()) != std::string::npos;
    case ValueType::kList:
      for (const Value& v : container.list()) {
        if (Equal(v, item)) return true;
      }
      return false;
    case ValueType::kDict: return container.dict().Find(item) != nullptr;
    default: break;
  }
  Throw(ErrorKind::kType,
        StrCat("argument of type '", TypeName(container), "' is not iterable"));
}

std::optional<Value> IndexSequence(const Value& obj, const Value& index) {
  if (!IsIntLike(index)) return std::nullopt;
  int64_t i = index.to_int();
  if (obj.is_sequence_list()) {
    const int64_t n = static_cast<int64_t>(obj.list().size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return std::nullopt;
    return obj.list()[i];
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (IsAscii(s)) {
      const int64_t n = static_cast<int64_t>(s.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return std::nullopt;
      return Value::String(std::string(1, s[i]));
    }
    const std::u32string u = DecodeUtf8(s);
    const int64_t n = static_cast<int64_t>(u.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return std::nullopt;
    std::string out;
    AppendUtf8(out, u[i]);
    return Value::String(std::move(out));
  }
  return std::nullopt;
}

namespace {

// PySlice_AdjustIndices: Python's normalization of slice bounds for a sequence of length n.
void AdjustSlice(int64_t n, const Value& start_v, const Value& stop_v, int64_t step,
                 int64_t* start, int64_t* stop) {
  auto get = [](const Value& v, int64_t dflt) {
    if (v.is_none() || v.is_undefined()) return dflt;
    if (!IsIntLike(v)) {
      Throw(ErrorKind::kType,
            "slice indices must be integers or None or have an __index__ method");
    }
    return v.to_int();
  };
  const int64_t lo = step < 0 ? -1 : 0;
  const int64_t hi = step < 0 ? n - 1 : n;
  *start = get(start_v, step < 0 ? hi : lo);
  *stop = get(stop_v, step < 0 ? lo : hi);
  for (int64_t* p : {start, stop}) {
    if (p == start && (start_v.is_none() || start_v.is_undefined())) continue;
    if (p == stop && (stop_v.is_none() || stop_v.is_undefined())) continue;
    if (*p < 0) {
      *p += n;
      if (*p < 0) *p = lo;
    } else if (*p >= n) {
      *p = hi;
    }
  }
}

}  // namespace

std::optional<Value> SliceSequence(const Value& obj, const Value& start_v, const Value& stop_v,
                                   const Value& step_v) {
  const bool is_str = obj.is_string();
  if (!is_str && !obj.is_sequence_list()) return std::nullopt;
  int64_t step = 1;
  if (!step_v.is_none() && !step_v.is_undefined()) {
    if (!IsIntLike(step_v)) {
      Throw(ErrorKind::kType,
            "slice indices must be integers or None or have an __index__ method");
    }
    step = step_v.to_int();
    if (step == 0) Throw(ErrorKind::kValue, "slice step cannot be zero");
  }
  std::u32string u;
  if (is_str) u = DecodeUtf8(obj.str());
  const int64_t n = is_str ? static_cast<int64_t>(u.size())
                           : static_cast<int64_t>(obj.list().size());
  int64_t start, stop;
  AdjustSlice(n, start_v, stop_v, step, &start, &stop);
  std::vector<int64_t> picks;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) picks.push_back(i);
  } else {
    for (int64_t i = start; i > stop; i += step) picks.push_back(i);
  }
  if (is_str) {
    std::u32string out;
    for (int64_t i : picks) out.push_back(u[i]);
    return Value::String(EncodeUtf8(out));
  }
  ValueList out;
  for (int64_t i : picks) out.push_back(obj.list()[i]);
  return Value::List(std::move(out), obj.list_kind());
}

}  // namespace gs::jinja
