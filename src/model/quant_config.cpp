#include "model/quant_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "util/mapped_file.h"

namespace gs {
namespace {

using nlohmann::json;

Expected<json> ReadJsonObject(const std::string& path) {
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return MakeError(path, ": not a valid JSON object");
  return j;
}

Status ReadIgnoreList(const json& obj, const char* key, const std::string& source,
                      std::vector<std::string>* out) {
  if (!obj.contains(key) || obj[key].is_null()) return Ok();
  if (!obj[key].is_array()) return MakeError(source, ": field '", key, "' must be a list");
  for (const json& e : obj[key]) {
    if (!e.is_string()) return MakeError(source, ": field '", key, "' must hold strings");
    out->push_back(e.get<std::string>());
  }
  return Ok();
}

Status CheckNvfp4Algo(const std::string& algo, const std::string& source) {
  if (algo == "NVFP4" || algo == "W4A16_NVFP4") return Ok();
  return MakeError(source, ": quant_algo '", algo,
                   "' is not supported (gemmaserve runs NVFP4 and BF16 checkpoints)");
}

Status ParseHfQuantConfig(const json& j, const std::string& source, QuantizationInfo* q) {
  const json& quant = j.contains("quantization") ? j["quantization"] : j;
  if (!quant.is_object()) return MakeError(source, ": field 'quantization' must be an object");
  if (!quant.contains("quant_algo") || !quant["quant_algo"].is_string()) {
    return MakeError(source, ": field 'quantization.quant_algo' is missing or not a string");
  }
  q->method = QuantMethod::kModelopt;
  q->quant_algo = quant["quant_algo"].get<std::string>();
  q->source = source;
  GS_RETURN_IF_ERROR(CheckNvfp4Algo(q->quant_algo, source));
  if (quant.contains("group_size")) {
    if (!quant["group_size"].is_number_integer()) {
      return MakeError(source, ": field 'quantization.group_size' must be an integer");
    }
    q->group_size = quant["group_size"].get<int>();
  }
  return ReadIgnoreList(quant, "exclude_modules", source, &q->ignore);
}

Status ParseConfigQuantization(const json& qc, const std::string& source, QuantizationInfo* q) {
  if (!qc.is_object()) return MakeError(source, ": field 'quantization_config' must be an object");
  const std::string method = qc.value("quant_method", "");
  if (method.rfind("modelopt", 0) == 0) {
    if (q->method == QuantMethod::kNone) {
      q->method = QuantMethod::kModelopt;
      q->source = source;
      q->quant_algo = qc.value("quant_algo", "NVFP4");
      GS_RETURN_IF_ERROR(CheckNvfp4Algo(q->quant_algo, source));
      GS_RETURN_IF_ERROR(ReadIgnoreList(qc, "ignore", source, &q->ignore));
      GS_RETURN_IF_ERROR(ReadIgnoreList(qc, "exclude_modules", source, &q->ignore));
    }
    return Ok();
  }
  if (method == "compressed-tensors") {
    if (q->method == QuantMethod::kModelopt) {
      return MakeError(source, ": quantization_config says compressed-tensors but ",
                       q->source, " says ModelOpt");
    }
    q->method = QuantMethod::kCompressedTensors;
    q->source = source;
    q->format = qc.value("format", "");
    if (q->format != "nvfp4-pack-quantized") {
      return MakeError(source, ": compressed-tensors format '", q->format,
                       "' is not supported (only nvfp4-pack-quantized)");
    }
    return ReadIgnoreList(qc, "ignore", source, &q->ignore);
  }
  return MakeError(source, ": quantization_config.quant_method '", method,
                   "' is not supported (expected modelopt or compressed-tensors)");
}

// ModelOpt writes shell-style wildcards ("*self_attn*", "model.vision_tower*");
// compressed-tensors writes exact names or "re:<regex>".
bool PatternMatches(const std::string& pattern, const std::string& module) {
  if (pattern.rfind("re:", 0) == 0) {
    try {
      return std::regex_match(module, std::regex(pattern.substr(3)));
    } catch (const std::regex_error&) {
      return false;
    }
  }
  // Glob with '*' only; a pattern also matches every submodule of a match (vLLM issue #28072).
  std::function<bool(size_t, size_t)> glob = [&](size_t p, size_t m) -> bool {
    if (p == pattern.size()) return m == module.size() || module[m] == '.';
    if (pattern[p] == '*') {
      for (size_t k = m; k <= module.size(); ++k) {
        if (glob(p + 1, k)) return true;
      }
      return false;
    }
    return m < module.size() && pattern[p] == module[m] && glob(p + 1, m + 1);
  };
  if (glob(0, 0)) return true;
  // "lm_head" style bare names match a module with that suffix.
  return module.size() > pattern.size() &&
         module.compare(module.size() - pattern.size(), pattern.size(), pattern) == 0 &&
         module[module.size() - pattern.size() - 1] == '.';
}

}  // namespace

const char* QuantMethodName(QuantMethod method) {
  switch (method) {
    case QuantMethod::kNone: return "none (BF16)";
    case QuantMethod::kModelopt: return "modelopt";
    case QuantMethod::kCompressedTensors: return "compressed-tensors";
  }
  return "?";
}

bool QuantizationInfo::IsIgnored(const std::string& module) const {
  for (const auto& p : ignore) {
    if (PatternMatches(p, module)) return true;
  }
  return false;
}

Expected<QuantizationInfo> LoadQuantizationInfo(const std::string& dir) {
  namespace fs = std::filesystem;
  QuantizationInfo q;
  const std::string hf_path = (fs::path(dir) / "hf_quant_config.json").string();
  try {
    if (fs::exists(hf_path)) {
      GS_ASSIGN_OR_RETURN(json hf, ReadJsonObject(hf_path));
      GS_RETURN_IF_ERROR(ParseHfQuantConfig(hf, hf_path, &q));
    }
    const std::string cfg_path = (fs::path(dir) / "config.json").string();
    GS_ASSIGN_OR_RETURN(json cfg, ReadJsonObject(cfg_path));
    const json* qc = nullptr;
    if (cfg.contains("quantization_config")) qc = &cfg["quantization_config"];
    else if (cfg.contains("text_config") && cfg["text_config"].is_object() &&
             cfg["text_config"].contains("quantization_config"))
      qc = &cfg["text_config"]["quantization_config"];
    if (qc) GS_RETURN_IF_ERROR(ParseConfigQuantization(*qc, cfg_path, &q));
  } catch (const std::exception& e) {
    return MakeError(dir, ": bad quantization config: ", e.what());
  }
  if (q.method != QuantMethod::kNone && q.group_size != 16) {
    return MakeError(q.source, ": NVFP4 group_size ", q.group_size, " is not supported (must be 16)");
  }
  return q;
}

}  // namespace gs
