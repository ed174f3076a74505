#include "chat/jinja/template.h"

#include <limits>

#include "chat/jinja/objects.h"
#include "util/str.h"

namespace gs::jinja {
namespace {

Value FromJsonDepth(const nlohmann::ordered_json& j, int depth) {
  if (depth > 512) Throw(ErrorKind::kLimit, "JSON context nested deeper than 512 levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value::Int(static_cast<int64_t>(u));
      }
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(FromJsonDepth(x, depth + 1));
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.Set(Value::String(it.key()), FromJsonDepth(it.value(), depth + 1));
      }
      return Value::DictValue(std::move(d));
    }
    default: return Value::None();
  }
}

}  // namespace

Value FromJson(const nlohmann::ordered_json& j) { return FromJsonDepth(j, 0); }

std::string FormatError(const std::string& name, const JinjaError& e) {
  return StrCat(name, ":", e.line(), ":", e.col(), ": ", ErrorKindName(e.kind()), ": ",
                e.message());
}

Expected<Template> Template::Parse(std::string_view source, std::string name,
                                   const ParseLimits& limits) {
  Template t;
  t.name_ = std::move(name);
  try {
    t.body_ = std::make_shared<const Body>(ParseTemplate(source, limits));
  } catch (const JinjaError& e) {
    return MakeError(FormatError(t.name_, e));
  } catch (const std::exception& e) {
    return MakeError(t.name_, ": internal error while parsing: ", e.what());
  }
  return t;
}

Expected<std::string> Template::Render(const nlohmann::ordered_json& context,
                                       const RenderLimits& limits) const {
  if (!context.is_object()) return MakeError(name_, ": render context must be a JSON object");
  Value ctx;
  try {
    ctx = FromJson(context);
  } catch (const JinjaError& e) {
    return MakeError(name_, ": ", e.message());
  }
  return Render(ctx.dict(), limits);
}

Expected<std::string> Template::Render(const Dict& context, const RenderLimits& limits) const {
  // Scopes: globals <- render variables <- template-level assignments.
  auto globals = std::make_shared<Frame>(nullptr);
  AddGlobals(*globals);
  auto vars = std::make_shared<Frame>(globals);
  for (const auto& [k, v] : context.items()) {
    if (k.is_string()) vars->vars[k.str()] = v;
  }
  auto root = std::make_shared<Frame>(vars);
  Interpreter interp(limits, root);
  std::string out;
  try {
    interp.Render(*body_, out);
  } catch (const JinjaError& e) {
    return MakeError(FormatError(name_, e));
  } catch (const std::bad_alloc&) {
    return MakeError(name_, ": out of memory while rendering");
  } catch (const std::exception& e) {
    return MakeError(name_, ": internal error while rendering: ", e.what());
  }
  return out;
}

}  // namespace gs::jinja
