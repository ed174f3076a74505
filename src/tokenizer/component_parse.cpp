// Parsing of the small tokenizer.json components. Anything gemmaserve does not implement is an
// error that names the component and option, so a file is never tokenized differently from HF.
#include <initializer_list>

#include "tokenizer/components.h"
#include "tokenizer/unicode.h"

namespace gs {
namespace {

using nlohmann::json;

std::string TypeName(const json& j) {
  return j.is_object() ? "object" : j.is_array() ? "array" : j.is_string() ? "string"
         : j.is_boolean() ? "boolean" : j.is_number() ? "number" : "null";
}

Status RequireObject(const json& j, const std::string& path) {
  if (!j.is_object()) return MakeError(path, ": expected an object, found ", TypeName(j));
  return Ok();
}

// Known fields only: an unknown field may be an option this implementation would ignore.
Status CheckFields(const json& j, const std::string& path, const std::string& type,
                   std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : j.items()) {
    bool ok = key == "type";
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) return MakeError(path, ": ", type, " option '", key, "' is not supported");
  }
  return Ok();
}

Expected<std::string> GetType(const json& j, const std::string& path) {
  GS_RETURN_IF_ERROR(RequireObject(j, path));
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) return MakeError(path, ": missing string field 'type'");
  return it->get<std::string>();
}

Expected<std::string> GetString(const json& j, const std::string& path, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return MakeError(path, ": missing field '", key, "'");
  if (!it->is_string()) return MakeError(path, ".", key, ": expected a string, found ", TypeName(*it));
  return it->get<std::string>();
}

Expected<bool> GetBool(const json& j, const std::string& path, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return MakeError(path, ": missing field '", key, "'");
  if (!it->is_boolean()) return MakeError(path, ".", key, ": expected a boolean, found ", TypeName(*it));
  return it->get<bool>();
}

Expected<size_t> GetCount(const json& j, const std::string& path, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return MakeError(path, ": missing field '", key, "'");
  if (!it->is_number_unsigned() || it->get<uint64_t>() > (1u << 30)) {
    return MakeError(path, ".", key, ": expected a non-negative integer");
  }
  return static_cast<size_t>(it->get<uint64_t>());
}

// {"String": "x"} -> "x". Regex patterns need a regex engine this implementation lacks.
Expected<std::string> GetStringPattern(const json& j, const std::string& path,
                                       const std::string& type) {
  auto it = j.find("pattern");
  if (it == j.end()) return MakeError(path, ": missing field 'pattern'");
  const std::string ppath = path + ".pattern";
  if (!it->is_object() || it->size() != 1) {
    return MakeError(ppath, ": expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (it->contains("Regex")) {
    return MakeError(path, ": ", type, " with a Regex pattern is not supported");
  }
  auto s = it->find("String");
  if (s == it->end() || !s->is_string()) return MakeError(ppath, ": expected {\"String\": text}");
  std::string pattern = s->get<std::string>();
  if (pattern.empty()) return MakeError(ppath, ": ", type, " with an empty pattern is not supported");
  return pattern;
}

Status ParseNormalizerInto(const json& j, const std::string& path, std::vector<NormalizerStep>* out,
                           int depth) {
  if (depth > 16) return MakeError(path, ": Sequence nested too deeply");
  GS_ASSIGN_OR_RETURN(std::string type, GetType(j, path));
  if (type == "Sequence") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"normalizers"}));
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return MakeError(path, ".normalizers: expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      GS_RETURN_IF_ERROR(
          ParseNormalizerInto((*it)[i], StrCat(path, ".normalizers[", i, "]"), out, depth + 1));
    }
    return Ok();
  }
  if (type == "Replace") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"pattern", "content"}));
    GS_ASSIGN_OR_RETURN(std::string pattern, GetStringPattern(j, path, "normalizer Replace"));
    GS_ASSIGN_OR_RETURN(std::string content, GetString(j, path, "content"));
    out->push_back({NormalizerStep::Kind::kReplace, std::move(pattern), std::move(content)});
    return Ok();
  }
  if (type == "Prepend") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"prepend"}));
    GS_ASSIGN_OR_RETURN(std::string prepend, GetString(j, path, "prepend"));
    out->push_back({NormalizerStep::Kind::kPrepend, "", std::move(prepend)});
    return Ok();
  }
  return MakeError(path, ": normalizer type '", type, "' is not supported");
}

Expected<SplitBehavior> ParseBehavior(const json& j, const std::string& path) {
  GS_ASSIGN_OR_RETURN(std::string b, GetString(j, path, "behavior"));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return MakeError(path, ".behavior: unknown split behavior '", b, "'");
}

Status ParsePreTokenizerInto(const json& j, const std::string& path, std::vector<SplitStep>* out,
                             int depth) {
  if (depth > 16) return MakeError(path, ": Sequence nested too deeply");
  GS_ASSIGN_OR_RETURN(std::string type, GetType(j, path));
  if (type == "Sequence") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"pretokenizers"}));
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) return MakeError(path, ".pretokenizers: expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      GS_RETURN_IF_ERROR(ParsePreTokenizerInto((*it)[i], StrCat(path, ".pretokenizers[", i, "]"),
                                               out, depth + 1));
    }
    return Ok();
  }
  if (type == "Split") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"pattern", "behavior", "invert"}));
    GS_ASSIGN_OR_RETURN(std::string pattern, GetStringPattern(j, path, "pre_tokenizer Split"));
    GS_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseBehavior(j, path));
    GS_ASSIGN_OR_RETURN(bool invert, GetBool(j, path, "invert"));
    out->push_back({std::move(pattern), behavior, invert});
    return Ok();
  }
  return MakeError(path, ": pre_tokenizer type '", type, "' is not supported");
}

Status ParseDecoderInto(const json& j, const std::string& path, std::vector<DecoderStep>* out,
                        int depth) {
  if (depth > 16) return MakeError(path, ": Sequence nested too deeply");
  GS_ASSIGN_OR_RETURN(std::string type, GetType(j, path));
  if (type == "Sequence") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"decoders"}));
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) return MakeError(path, ".decoders: expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      GS_RETURN_IF_ERROR(
          ParseDecoderInto((*it)[i], StrCat(path, ".decoders[", i, "]"), out, depth + 1));
    }
    return Ok();
  }
  DecoderStep step;
  if (type == "Replace") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"pattern", "content"}));
    GS_ASSIGN_OR_RETURN(step.pattern, GetStringPattern(j, path, "decoder Replace"));
    GS_ASSIGN_OR_RETURN(step.content, GetString(j, path, "content"));
    step.kind = DecoderStep::Kind::kReplace;
  } else if (type == "ByteFallback") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {}));
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {}));
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"content", "start", "stop"}));
    GS_ASSIGN_OR_RETURN(step.content, GetString(j, path, "content"));
    char32_t cp;
    if (step.content.empty() || DecodeUtf8(step.content, 0, &cp) != step.content.size()) {
      return MakeError(path, ".content: expected exactly one character");
    }
    GS_ASSIGN_OR_RETURN(step.start, GetCount(j, path, "start"));
    GS_ASSIGN_OR_RETURN(step.stop, GetCount(j, path, "stop"));
    step.kind = DecoderStep::Kind::kStrip;
  } else {
    return MakeError(path, ": decoder type '", type, "' is not supported");
  }
  out->push_back(std::move(step));
  return Ok();
}

// One piece of a template: {"SpecialToken": {"id": NAME, "type_id": N}} or
// {"Sequence": {"id": "A", "type_id": N}}.
Status ParseTemplatePiece(const json& piece, const std::string& path, const json& specials,
                          bool* seen_a, PostProcessor* out) {
  if (!piece.is_object() || piece.size() != 1) {
    return MakeError(path, ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
  }
  const std::string kind = piece.begin().key();
  const json& body = piece.begin().value();
  if (!body.is_object() || !body.contains("id") || !body["id"].is_string()) {
    return MakeError(path, ".", kind, ": expected an object with a string 'id'");
  }
  const std::string id = body["id"].get<std::string>();
  if (kind == "Sequence") {
    if (id != "A") return MakeError(path, ": the single template may only use sequence $A");
    if (*seen_a) return MakeError(path, ": sequence $A appears twice in the single template");
    *seen_a = true;
    return Ok();
  }
  if (kind != "SpecialToken") return MakeError(path, ": unknown template piece '", kind, "'");
  auto sp = specials.find(id);
  if (sp == specials.end()) {
    return MakeError(path, ": special token '", id, "' is missing from special_tokens");
  }
  const std::string sp_path = "post_processor.special_tokens." + id;
  if (!sp->is_object() || !sp->contains("ids") || !(*sp)["ids"].is_array()) {
    return MakeError(sp_path, ": expected an object with an 'ids' array");
  }
  for (const json& v : (*sp)["ids"]) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 0x7FFFFFFF) {
      return MakeError(sp_path, ".ids: expected non-negative integers");
    }
    (*seen_a ? out->suffix : out->prefix).push_back(static_cast<int32_t>(v.get<uint64_t>()));
  }
  return Ok();
}

}  // namespace

Status ParseNormalizer(const json& j, const std::string& path, Normalizer* out) {
  if (j.is_null()) return Ok();
  return ParseNormalizerInto(j, path, &out->steps(), 0);
}

Status ParsePreTokenizer(const json& j, const std::string& path, PreTokenizer* out) {
  if (j.is_null()) return Ok();
  return ParsePreTokenizerInto(j, path, &out->steps(), 0);
}

Status ParseDecoder(const json& j, const std::string& path, Decoder* out) {
  if (j.is_null()) return Ok();
  out->set_present();
  return ParseDecoderInto(j, path, &out->steps(), 0);
}

Status ParsePostProcessor(const json& j, const std::string& path, PostProcessor* out) {
  if (j.is_null()) return Ok();
  GS_ASSIGN_OR_RETURN(std::string type, GetType(j, path));
  if (type != "TemplateProcessing") {
    return MakeError(path, ": post_processor type '", type, "' is not supported");
  }
  GS_RETURN_IF_ERROR(CheckFields(j, path, type, {"single", "pair", "special_tokens"}));
  auto single = j.find("single");
  if (single == j.end() || !single->is_array()) return MakeError(path, ".single: expected an array");
  auto specials = j.find("special_tokens");
  if (specials == j.end() || !specials->is_object()) {
    return MakeError(path, ".special_tokens: expected an object");
  }
  bool seen_a = false;
  for (size_t i = 0; i < single->size(); ++i) {
    GS_RETURN_IF_ERROR(ParseTemplatePiece((*single)[i], StrCat(path, ".single[", i, "]"),
                                          *specials, &seen_a, out));
  }
  if (!seen_a) return MakeError(path, ".single: the template has no $A sequence");
  out->present = true;
  return Ok();
}

}  // namespace gs
