// Error handling without exceptions across module boundaries: Expected<T> holds either a value or
// an Error whose message names the file, tensor, field or parameter at fault.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "util/str.h"

namespace gs {

struct Error {
  std::string message;
};

// Builds an Error from any streamable pieces: MakeError("file ", path, ": bad header").
template <typename... Args>
Error MakeError(const Args&... args) {
  return Error{StrCat(args...)};
}

template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  Error&& take_error() { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Expected<void>;

inline Status Ok() { return Status(); }

}  // namespace gs

#define GS_CONCAT_INNER(a, b) a##b
#define GS_CONCAT(a, b) GS_CONCAT_INNER(a, b)

// Returns the error of a Status/Expected expression from the enclosing function.
#define GS_RETURN_IF_ERROR(expr)                               \
  do {                                                         \
    auto gs_status_ = (expr);                                  \
    if (!gs_status_.ok()) return gs_status_.take_error();      \
  } while (0)

// `GS_ASSIGN_OR_RETURN(auto x, Foo());` declares x from a successful Expected, else returns.
#define GS_ASSIGN_OR_RETURN(lhs, expr) \
  GS_ASSIGN_OR_RETURN_IMPL(GS_CONCAT(gs_expected_, __LINE__), lhs, expr)
#define GS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.take_error();        \
  lhs = std::move(tmp).value()
