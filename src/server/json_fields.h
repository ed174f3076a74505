// Typed, range-checked reading of request JSON fields. Each reader leaves the output untouched
// when the field is absent or null (OpenAI clients send null for "unset") and returns an ApiError
// naming the field when the value has the wrong type or is out of range. Never throws.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"

namespace gs::server {

using Json = nlohmann::ordered_json;
using MaybeError = std::optional<ApiError>;

// True when `body[name]` exists and is not null.
bool Has(const Json& body, const char* name);

MaybeError ReadBool(const Json& body, const char* name, bool* out);
MaybeError ReadBool(const Json& body, const char* name, std::optional<bool>* out);
// Integers: a JSON integer, or a float with an integral value (pydantic's lax mode accepts 3.0).
MaybeError ReadInt(const Json& body, const char* name, int64_t lo, int64_t hi,
                   std::optional<int64_t>* out);
MaybeError ReadNumber(const Json& body, const char* name, double lo, double hi,
                      std::optional<double>* out);
MaybeError ReadString(const Json& body, const char* name, std::optional<std::string>* out);
// A string or a list of strings (OpenAI's `stop`); at most max_items.
MaybeError ReadStringOrList(const Json& body, const char* name, size_t max_items,
                            std::vector<std::string>* out);
// A list of integers within [lo, hi]; at most max_items.
MaybeError ReadIntList(const Json& body, const char* name, int64_t lo, int64_t hi,
                       size_t max_items, std::vector<int32_t>* out);

// Converts a JSON number to an integer when it has an integral value.
std::optional<int64_t> AsInteger(const Json& v);
// Short, printable rendering of a value for error messages.
std::string Describe(const Json& v);

}  // namespace gs::server
