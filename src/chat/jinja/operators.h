// Python operator semantics on Values: arithmetic with int/float promotion, floor division and
// modulo with Python signs, sequence concatenation/repetition, `in`, indexing and slicing.
#pragma once

#include <optional>

#include "chat/jinja/ast.h"
#include "chat/jinja/value.h"

namespace gs::jinja {

class Interpreter;

Value BinaryOperation(Interpreter& interp, BinaryOp op, const Value& a, const Value& b);
Value UnaryMinus(const Value& v);
Value UnaryPlus(const Value& v);
bool Contains(const Value& container, const Value& item);

// obj[index] for list/tuple/str with Python negative indices; nullopt when out of range or when
// obj is not indexable by an int.
std::optional<Value> IndexSequence(const Value& obj, const Value& index);
// obj[start:stop:step] for list/tuple/str; nullopt when obj cannot be sliced.
std::optional<Value> SliceSequence(const Value& obj, const Value& start, const Value& stop,
                                   const Value& step);

}  // namespace gs::jinja
