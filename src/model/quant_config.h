// The quantization a checkpoint declares: hf_quant_config.json (ModelOpt) and/or the
// `quantization_config` of config.json (ModelOpt or compressed-tensors form).
#pragma once

#include <string>
#include <vector>

#include "util/status.h"

namespace gs {

enum class QuantMethod { kNone, kModelopt, kCompressedTensors };

const char* QuantMethodName(QuantMethod method);

struct QuantizationInfo {
  QuantMethod method = QuantMethod::kNone;
  std::string quant_algo;            // "NVFP4" for ModelOpt
  std::string format;                // "nvfp4-pack-quantized" for compressed-tensors
  int group_size = 16;
  std::vector<std::string> ignore;   // exclude_modules / ignore, as written (wildcards, re:)
  std::string source;                // which file declared it

  // True if `module` (e.g. "model.language_model.layers.0.self_attn.q_proj") is excluded.
  bool IsIgnored(const std::string& module) const;
};

// Reads <dir>/hf_quant_config.json and <dir>/config.json's quantization_config. No declaration
// at all -> method kNone. Unsupported algorithms (FP8, INT4 AWQ, ...) are errors.
Expected<QuantizationInfo> LoadQuantizationInfo(const std::string& dir);

}  // namespace gs
