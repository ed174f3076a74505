// Public entry point of the Jinja engine: parse a template once, render it many times with a
// JSON context. Renders exactly as transformers' jinja2 environment does (see lexer.h and
// interpreter.h for the details); errors come back as gs::Error with "name:line:col: Kind: msg".
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "chat/jinja/ast.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/parser.h"
#include "util/status.h"

namespace gs::jinja {

// JSON -> Python value (objects keep their key order, as json.loads does).
Value FromJson(const nlohmann::ordered_json& j);

class Template {
 public:
  static Expected<Template> Parse(std::string_view source, std::string name = "template",
                                  const ParseLimits& limits = {});

  // Renders with the context's top-level keys as variables (plus the jinja2/transformers
  // globals). The context must be a JSON object.
  Expected<std::string> Render(const nlohmann::ordered_json& context,
                               const RenderLimits& limits = {}) const;
  // Same with an already converted context.
  Expected<std::string> Render(const Dict& context, const RenderLimits& limits = {}) const;

  const Body& body() const { return *body_; }
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<const Body> body_;
  std::string name_;
};

// Formats an engine error as "name:line:col: Kind: message".
std::string FormatError(const std::string& name, const JinjaError& e);

}  // namespace gs::jinja
