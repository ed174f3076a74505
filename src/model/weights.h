// Gemma4Weights: every tensor of the text model, per layer and per expert, as views into the
// memory-mapped checkpoint (NVFP4 stays NVFP4; only small vectors are converted to float).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/quant_config.h"
#include "model/quantized_linear.h"
#include "model/safetensors.h"
#include "util/status.h"

namespace gs {

struct AttentionWeights {
  QuantizedLinear q, k, v, o;  // v is empty on k_eq_v layers
  std::vector<float> q_norm, k_norm;
};

struct LayerWeights {
  AttentionWeights attn;
  std::vector<float> input_norm, post_attn_norm;
  std::vector<float> pre_ffn_norm, post_ffn_norm_1;    // dense MLP
  std::vector<float> pre_ffn_norm_2, post_ffn_norm_2;  // MoE
  std::vector<float> post_ffn_norm;                    // of (dense + MoE)
  float layer_scalar = 1.0f;
  QuantizedLinear mlp_gate, mlp_up, mlp_down;
  QuantizedLinear router;  // [num_experts, hidden]
  std::vector<float> router_scale, per_expert_scale;
  ExpertBank experts;
};

struct Gemma4Weights {
  std::shared_ptr<const TensorStore> store;  // owns the mappings every view points into
  QuantizationInfo quant;
  std::string prefix;  // "model.language_model." or "model."
  QuantizedLinear embed;  // [vocab, hidden] bf16, also the tied lm_head
  std::vector<float> final_norm;
  std::vector<LayerWeights> layers;
  int skipped_tensors = 0;  // vision/audio tensors present but not used by the text model

  // Summary for logs: "modelopt NVFP4: 210 nvfp4 / 150 bf16 linears, 17.1 GB".
  std::string Describe() const;
};

// Loads and checks every text-model tensor the config calls for. Errors name the tensor.
Expected<Gemma4Weights> LoadGemma4Weights(const ModelConfig& config, const std::string& dir);

// The same from an already-open store (tests, tools). `after_each_layer`, when given, runs once a
// layer is bound: streaming tools release the pages its checks read (NVFP4 block scales are
// scanned for NaN), so binding a whole checkpoint does not leave it resident.
Expected<Gemma4Weights> BindGemma4Weights(const ModelConfig& config,
                                          std::shared_ptr<const TensorStore> store,
                                          const QuantizationInfo& quant,
                                          const std::function<void()>& after_each_layer = {});

}  // namespace gs
