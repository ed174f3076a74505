#include "tools/modelopt_config.h"

#include "tools/checkpoint_writer.h"
#include "util/mapped_file.h"

namespace gs {

using nlohmann::json;

std::vector<std::string> ModeloptExcludeModules(const std::string& text_prefix) {
  return {"lm_head", text_prefix + "layers.*.self_attn*", text_prefix + "layers.*.router*",
          "model.vision_tower*", "model.embed_vision*"};
}

json ModeloptQuantizationConfig(const ModeloptDeclaration& d) {
  const json args = {{"num_bits", 4}, {"type", "float"}, {"group_size", 16}, {"dynamic", false}};
  json group = {{"targets", {"Linear"}}, {"weights", args}};
  if (d.activations) group["input_activations"] = args;
  return {{"quant_method", "modelopt"},
          {"quant_algo", d.quant_algo()},
          {"producer", {{"name", d.producer}}},
          {"ignore", d.exclude},
          {"config_groups", {{"group_0", group}}}};
}

json ModeloptHfQuantConfig(const ModeloptDeclaration& d) {
  return {{"producer", {{"name", d.producer}}},
          {"quantization",
           {{"quant_algo", d.quant_algo()}, {"kv_cache_quant_algo", nullptr}, {"group_size", 16},
            {"exclude_modules", d.exclude}}}};
}

Status WriteModeloptMetadata(const std::string& from_dir, const ModeloptDeclaration& d,
                             CheckpointWriter* writer) {
  const std::string path = from_dir + "/config.json";
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  json cfg = json::parse(text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return MakeError(path, ": not a valid JSON object");
  if (cfg.contains("text_config") && cfg["text_config"].is_object()) {
    cfg["text_config"].erase("quantization_config");
  }
  cfg["quantization_config"] = ModeloptQuantizationConfig(d);
  GS_RETURN_IF_ERROR(writer->WriteJson("config.json", cfg));
  GS_RETURN_IF_ERROR(writer->WriteJson("hf_quant_config.json", ModeloptHfQuantConfig(d)));
  return writer->CopyNonWeightFiles(from_dir);
}

}  // namespace gs
