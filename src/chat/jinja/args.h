// Binds call arguments to named parameters the way Python does for the builtin filters,
// tests and methods (positional first, then keywords; unknown/duplicate keywords are errors).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja/value.h"

namespace gs::jinja {

class ArgBinder {
 public:
  ArgBinder(std::string_view function, const CallArgs& args,
            std::initializer_list<const char*> names);
  // The bound argument, or nullptr when it was not given.
  const Value* Get(size_t i) const { return bound_[i].is_set ? &bound_[i].value : nullptr; }
  Value GetOr(size_t i, Value fallback) const { return Get(i) ? *Get(i) : std::move(fallback); }
  // Raises TypeError when a required argument is missing.
  const Value& Require(size_t i) const;

 private:
  struct Slot {
    bool is_set = false;
    Value value;
  };
  std::string function_;
  std::vector<std::string> names_;
  std::vector<Slot> bound_;
};

}  // namespace gs::jinja
