// `gemmaserve convert`: compressed-tensors NVFP4 (e.g. RedHatAI/gemma-4-26B-A4B-it-NVFP4) to
// ModelOpt NVFP4 the way FusenAI/gemma-4-26B-A4B-it-NVFP4 was made: every self-attention
// projection dequantized to BF16 (e2m1 × e4m3 block scale ÷ weight_global_scale), every other
// NVFP4 tensor renamed (weight_packed → weight, weight_global_scale → weight_scale_2 = 1/x,
// input_global_scale → input_scale = 1/x), the quantization config rewritten in ModelOpt form.
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace gs {

struct ConvertOptions {
  std::string from, to;
  bool overwrite = false;
  uint64_t max_shard_bytes = 5'000'000'000;
};

Status ConvertCompressedTensorsToModelopt(const ConvertOptions& options);

}  // namespace gs
