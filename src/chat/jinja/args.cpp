#include "chat/jinja/args.h"

#include "chat/jinja/error.h"
#include "util/str.h"

namespace gs::jinja {

ArgBinder::ArgBinder(std::string_view function, const CallArgs& args,
                     std::initializer_list<const char*> names)
    : function_(function), names_(names.begin(), names.end()), bound_(names.size()) {
  if (args.positional.size() > names_.size()) {
    Throw(ErrorKind::kType, StrCat(function_, "() takes at most ", names_.size(),
                                   " argument(s) (", args.positional.size(), " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    bound_[i].is_set = true;
    bound_[i].value = args.positional[i];
  }
  for (const auto& [name, value] : args.keywords) {
    size_t i = 0;
    while (i < names_.size() && names_[i] != name) ++i;
    if (i == names_.size()) {
      Throw(ErrorKind::kType,
            StrCat(function_, "() got an unexpected keyword argument '", name, "'"));
    }
    if (bound_[i].is_set) {
      Throw(ErrorKind::kType,
            StrCat(function_, "() got multiple values for argument '", name, "'"));
    }
    bound_[i].is_set = true;
    bound_[i].value = value;
  }
}

const Value& ArgBinder::Require(size_t i) const {
  if (!bound_[i].is_set) {
    Throw(ErrorKind::kType, StrCat(function_, "() missing required argument: '", names_[i], "'"));
  }
  return bound_[i].value;
}

}  // namespace gs::jinja
