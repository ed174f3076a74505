// Activation calibration for `quantize --calib`: runs the BF16 model on the CPU over calibration
// sequences and records the largest |input| each linear layer sees (every expert on every token).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "util/status.h"

namespace gs {

// Token sequences from a calibration file: .jsonl lines of id arrays or JSON strings, else plain
// text; `model_dir` supplies tokenizer.json when text must be tokenized.
Expected<std::vector<std::vector<int32_t>>> ReadCalibrationSequences(const std::string& path,
                                                                     const std::string& model_dir,
                                                                     int chunk_tokens, int vocab_size);

// Module name (e.g. "model.layers.3.experts.7.down_proj") -> max |input| over all sequences.
Expected<std::map<std::string, float>> MeasureInputAmax(const ModelConfig& config, Gemma4Weights weights,
                                                        const std::vector<std::vector<int32_t>>& sequences);

}  // namespace gs
