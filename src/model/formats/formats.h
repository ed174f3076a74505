// Checkpoint weight formats -> QuantizedLinear. Each format's file knows its tensor names and
// checks; LoadLinear picks the format from the tensors present, so any linear of the model may be
// BF16 or NVFP4 as the checkpoint says.
#pragma once

#include <string>
#include <vector>

#include "model/quant_config.h"
#include "model/quantized_linear.h"
#include "model/safetensors.h"
#include "util/status.h"

namespace gs {

// `prefix` is the module path without the trailing ".weight". Expected shape [rows, cols].
Expected<QuantizedLinear> LoadBf16Linear(const TensorStore& store, const std::string& prefix,
                                         int64_t rows, int64_t cols);
Expected<QuantizedLinear> LoadModeloptLinear(const TensorStore& store, const std::string& prefix,
                                             int64_t rows, int64_t cols);
Expected<QuantizedLinear> LoadCompressedTensorsLinear(const TensorStore& store,
                                                      const std::string& prefix, int64_t rows,
                                                      int64_t cols);

// Detects the format by tensor names (`weight_packed` -> compressed-tensors, uint8 `weight` with
// `weight_scale_2` -> ModelOpt, bf16 `weight` -> BF16) and checks it against the declared method.
Expected<QuantizedLinear> LoadLinear(const TensorStore& store, const QuantizationInfo& quant,
                                     const std::string& prefix, int64_t rows, int64_t cols);

// Expert e of transformers' fused BF16 layout: gate_up_proj [E, 2I, H] (gate rows first),
// down_proj [E, H, I].
Expected<ExpertWeights> LoadFusedBf16Expert(const TensorView& gate_up, const TensorView& down,
                                            int expert, int64_t hidden, int64_t inter);

// A small vector (norm weight, scale) of bf16/f16/f32 with the expected element count, as float.
Expected<std::vector<float>> LoadVector(const TensorStore& store, const std::string& name,
                                        int64_t numel);
// A scalar tensor, shape [] or [1], of f32/bf16/f16.
Expected<float> LoadScalar(const TensorStore& store, const std::string& name);

// Shared checks for the NVFP4 formats.
namespace nvfp4_detail {
Status CheckCodesAndScales(const TensorView& codes, const TensorView& scales,
                           const std::string& prefix, int64_t rows, int64_t cols);
Status CheckGlobalScale(float value, const std::string& name);
}  // namespace nvfp4_detail

}  // namespace gs
