// The Gemma 4 vision tower and its projector into the text model (model.vision_tower.*,
// model.embed_vision.*), as views into the memory-mapped checkpoint. BF16 in every release
// checkpoint (quantization recipes leave the vision tower alone).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/quantized_linear.h"
#include "model/safetensors.h"
#include "util/status.h"

namespace gs {

struct VisionLayerWeights {
  QuantizedLinear q, k, v, o;  // `.linear.weight`: transformers' ClippableLinear wrapper
  std::vector<float> q_norm, k_norm;  // [head_dim]
  QuantizedLinear gate, up, down;
  std::vector<float> input_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm;
};

struct VisionWeights {
  std::shared_ptr<const TensorStore> store;
  QuantizedLinear patch_proj;  // [hidden, patch²·3]
  // position_embedding_table [2, P, hidden] as float: row x of table 0, row y of table 1.
  std::vector<float> position_table;
  std::vector<VisionLayerWeights> layers;
  std::vector<float> std_bias, std_scale;  // [hidden], empty unless config.standardize
  QuantizedLinear projector;  // embed_vision.embedding_projection [text hidden, hidden]

  const float* PositionRow(int table, int index, int hidden, int size) const {
    return &position_table[(static_cast<size_t>(table) * size + index) * hidden];
  }
};

// Binds every vision tensor the config calls for; errors name the missing or misshapen tensor.
Expected<VisionWeights> BindVisionWeights(const ModelConfig& config,
                                          std::shared_ptr<const TensorStore> store);
Expected<VisionWeights> LoadVisionWeights(const ModelConfig& config, const std::string& dir);

}  // namespace gs
