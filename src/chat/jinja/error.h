// The one exception type the Jinja engine throws internally. It never leaves the engine:
// Template::Parse/Render catch it and return a gs::Error with "name:line:col: Kind: message".
#pragma once

#include <exception>
#include <string>
#include <utility>

namespace gs::jinja {

// Named after the Python exception jinja2 would raise in the same situation.
enum class ErrorKind {
  kSyntax,         // TemplateSyntaxError
  kUndefined,      // UndefinedError
  kType,           // TypeError
  kValue,          // ValueError
  kSecurity,       // SecurityError (sandbox)
  kZeroDivision,   // ZeroDivisionError
  kOverflow,       // OverflowError
  kTemplate,       // TemplateError from raise_exception()
  kFilterArgument, // FilterArgumentError
  kRuntime,        // TemplateRuntimeError / other
  kLimit,          // our resource limits (steps, recursion, output size)
};

const char* ErrorKindName(ErrorKind kind);

class JinjaError : public std::exception {
 public:
  JinjaError(ErrorKind kind, std::string message, int line = 0, int col = 0)
      : kind_(kind), message_(std::move(message)), line_(line), col_(col) {}
  const char* what() const noexcept override { return message_.c_str(); }
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  int line() const { return line_; }
  int col() const { return col_; }
  bool has_location() const { return line_ > 0; }
  void SetLocation(int line, int col) {
    line_ = line;
    col_ = col;
  }

 private:
  ErrorKind kind_;
  std::string message_;
  int line_;
  int col_;
};

[[noreturn]] inline void Throw(ErrorKind kind, std::string message) {
  throw JinjaError(kind, std::move(message));
}

}  // namespace gs::jinja
