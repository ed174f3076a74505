// Splits template source into tokens exactly as jinja2's lexer does with the environment
// transformers uses: trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
// default delimiters, `-`/`+` whitespace control, comments and raw blocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gs::jinja {

enum class TokenType : uint8_t {
  kData,           // literal template text
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,
  kInteger,
  kFloat,
  kOperator,  // value holds the operator text ("+", "//", "(", ...)
  kEof,
};

struct Token {
  TokenType type;
  std::string value;  // data/name/string/operator text
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int col = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws JinjaError(kSyntax) with the position of the offending character.
std::vector<Token> Tokenize(std::string_view source, const LexerOptions& options = {});

const char* TokenTypeName(TokenType type);

}  // namespace gs::jinja
