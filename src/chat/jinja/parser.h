// Recursive-descent parser following jinja2's grammar and operator precedence (jinja2/parser.py):
// condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** (left-assoc) < unary/filters.
#pragma once

#include <string_view>
#include <vector>

#include "chat/jinja/ast.h"
#include "chat/jinja/lexer.h"

namespace gs::jinja {

struct ParseLimits {
  int max_nesting = 160;  // expression/block nesting and operator-chain length
};

// Parses a whole template; throws JinjaError(kSyntax) with the line/column at fault.
Body ParseTemplate(std::string_view source, const ParseLimits& limits = {});

// Known filter / test names (checked at parse time, as jinja2 does when compiling).
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

}  // namespace gs::jinja
