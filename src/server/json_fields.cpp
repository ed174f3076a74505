#include "server/json_fields.h"

#include <cmath>
#include <limits>

#include "util/str.h"

namespace gs::server {

bool Has(const Json& body, const char* name) {
  auto it = body.find(name);
  return it != body.end() && !it->is_null();
}

std::string Describe(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

namespace {

const char* TypeName(const Json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

ApiError WrongType(const char* name, const char* expected, const Json& v) {
  return BadRequest(StrCat("'", name, "' must be ", expected, ", got ", TypeName(v), " ",
                           Describe(v)),
                    name);
}

}  // namespace

std::optional<int64_t> AsInteger(const Json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

MaybeError ReadBool(const Json& body, const char* name, bool* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (!v.is_boolean()) return WrongType(name, "a boolean", v);
  *out = v.get<bool>();
  return std::nullopt;
}

MaybeError ReadBool(const Json& body, const char* name, std::optional<bool>* out) {
  bool b = false;
  if (!Has(body, name)) return std::nullopt;
  if (auto e = ReadBool(body, name, &b)) return e;
  *out = b;
  return std::nullopt;
}

MaybeError ReadInt(const Json& body, const char* name, int64_t lo, int64_t hi,
                   std::optional<int64_t>* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (!v.is_number()) return WrongType(name, "an integer", v);
  const std::optional<int64_t> i = AsInteger(v);
  if (!i) return WrongType(name, "an integer", v);
  if (*i < lo || *i > hi) {
    return BadRequest(StrCat("'", name, "' is ", *i, "; it must be in [", lo, ", ", hi, "]"), name);
  }
  *out = *i;
  return std::nullopt;
}

MaybeError ReadNumber(const Json& body, const char* name, double lo, double hi,
                      std::optional<double>* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (!v.is_number()) return WrongType(name, "a number", v);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    return BadRequest(StrCat("'", name, "' is ", Describe(v), "; it must be in [", lo, ", ", hi, "]"),
                      name);
  }
  *out = d;
  return std::nullopt;
}

MaybeError ReadString(const Json& body, const char* name, std::optional<std::string>* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (!v.is_string()) return WrongType(name, "a string", v);
  *out = v.get<std::string>();
  return std::nullopt;
}

MaybeError ReadStringOrList(const Json& body, const char* name, size_t max_items,
                            std::vector<std::string>* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (v.is_string()) {
    out->assign(1, v.get<std::string>());
    return std::nullopt;
  }
  if (!v.is_array()) return WrongType(name, "a string or a list of strings", v);
  if (v.size() > max_items) {
    return BadRequest(StrCat("'", name, "' has ", v.size(), " entries; at most ", max_items,
                             " are allowed"),
                      name);
  }
  out->clear();
  for (const Json& item : v) {
    if (!item.is_string()) return WrongType(name, "a string or a list of strings", item);
    out->push_back(item.get<std::string>());
  }
  return std::nullopt;
}

MaybeError ReadIntList(const Json& body, const char* name, int64_t lo, int64_t hi,
                       size_t max_items, std::vector<int32_t>* out) {
  if (!Has(body, name)) return std::nullopt;
  const Json& v = body[name];
  if (!v.is_array()) return WrongType(name, "a list of integers", v);
  if (v.size() > max_items) {
    return BadRequest(StrCat("'", name, "' has ", v.size(), " entries; at most ", max_items,
                             " are allowed"),
                      name);
  }
  out->clear();
  for (const Json& item : v) {
    const std::optional<int64_t> i = item.is_number() ? AsInteger(item) : std::nullopt;
    if (!i) return WrongType(name, "a list of integers", item);
    if (*i < lo || *i > hi) {
      return BadRequest(StrCat("'", name, "' entry ", *i, " is outside [", lo, ", ", hi, "]"), name);
    }
    out->push_back(static_cast<int32_t>(*i));
  }
  return std::nullopt;
}

}  // namespace gs::server
