// `gemmaserve inspect`: what a checkpoint holds and whether it looks sane — format and
// quantization per module group, parameters and bytes per component, KV bytes per token by layer
// type, estimated GPU memory at a context length, and findings (NaN/Inf, bad scales, gate/up
// global-scale mismatches, partial experts).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "util/status.h"

namespace gs {

struct InspectOptions {
  std::string path;
  int64_t max_model_len = 4096;
  int kv_bytes_per_element = 2;  // 2 = bf16, 1 = fp8
  bool scan_values = true;       // read every value for NaN/Inf (slow on 17 GB, shows progress)
};

// The report as JSON (what --json prints); FormatInspectReport renders it for people.
Expected<nlohmann::json> InspectCheckpoint(const InspectOptions& options);
std::string FormatInspectReport(const nlohmann::json& report);

}  // namespace gs
