// The ModelOpt NVFP4 quantization declaration, in its one home: config.json's
// `quantization_config` and `hf_quant_config.json`, as convert, quantize and make-demo-model
// write them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/status.h"

namespace gs {

class CheckpointWriter;

struct ModeloptDeclaration {
  std::string producer;               // e.g. "gemmaserve convert"
  bool activations = true;            // has input_scale: NVFP4; else weight-only W4A16_NVFP4
  std::vector<std::string> exclude;   // modules kept in BF16 ('*' globs)

  std::string quant_algo() const { return activations ? "NVFP4" : "W4A16_NVFP4"; }
};

// The modules a FusenAI-style ModelOpt checkpoint keeps in BF16, as exclude_modules patterns.
std::vector<std::string> ModeloptExcludeModules(const std::string& text_prefix);

nlohmann::json ModeloptQuantizationConfig(const ModeloptDeclaration& d);  // config.json
nlohmann::json ModeloptHfQuantConfig(const ModeloptDeclaration& d);       // hf_quant_config.json

// Everything of a converted checkpoint but its tensors: `from_dir`'s config.json with the
// quantization_config replaced (a text_config copy of the old one removed), hf_quant_config.json,
// and the files kept as they are (tokenizer, templates, generation config).
Status WriteModeloptMetadata(const std::string& from_dir, const ModeloptDeclaration& d,
                             CheckpointWriter* writer);

}  // namespace gs
