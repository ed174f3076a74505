// Gemma 4 model configuration, parsed once from config.json (+ generation_config.json) and
// immutable afterwards. Every layer's kind, head count and head size is explicit here so no other
// code re-derives them from the two spellings transformers has used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace gs {

enum class LayerKind { kSliding, kGlobal };

enum class RopeType { kDefault, kProportional };

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;  // proportional: fraction of head_dim whose pairs rotate
  double factor = 1.0;                 // divides inv_freq

  // Inverse frequencies of the head_dim/2 rotation pairs (i, i + head_dim/2). Pairs that do not
  // rotate (proportional RoPE beyond the rotary fraction) get 0.
  std::vector<float> InverseFrequencies(int head_dim) const;
};

struct LayerConfig {
  LayerKind kind = LayerKind::kSliding;
  int num_kv_heads = 0;
  int head_dim = 0;
  bool k_eq_v = false;  // V is the raw K projection (no v_proj tensor)
  RopeConfig rope;
};

struct VisionConfig {
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int patch_size = 0;
  int pooling_kernel_size = 0;
  int position_embedding_size = 0;
  int default_output_length = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 100.0;
  bool standardize = false;
};

struct ModelConfig {
  std::string architecture;  // Gemma4ForConditionalGeneration | Gemma4ForCausalLM
  bool multimodal = false;   // config has text_config + vision_config

  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int vocab_size = 0;
  int sliding_window = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double final_logit_softcapping = 0.0;  // 0 = none
  bool tie_word_embeddings = true;
  std::string hidden_activation;  // gelu_pytorch_tanh

  int intermediate_size = 0;  // dense MLP
  bool enable_moe_block = false;
  int num_experts = 0;
  int top_k_experts = 0;
  int moe_intermediate_size = 0;

  std::vector<LayerConfig> layers;

  // Token ids: bos/pad from config, stop ids from generation_config.json when present.
  int bos_token_id = 2;
  int pad_token_id = 0;
  std::vector<int> eos_token_ids;
  int image_token_id = -1;
  int boi_token_id = -1;
  int eoi_token_id = -1;

  // Sampling defaults from generation_config.json (absent -> greedy-compatible defaults).
  struct GenerationDefaults {
    double temperature = 1.0;
    int top_k = 0;
    double top_p = 1.0;
    double min_p = 0.0;
    bool do_sample = false;
  } generation;

  std::optional<VisionConfig> vision;

  int max_head_dim() const;
  int num_layers_of(LayerKind kind) const;
  // Bytes of BF16 KV per token for one layer (K and V; k_eq_v layers still store both).
  int64_t KvBytesPerToken(int layer, int bytes_per_element = 2) const;
};

// Parses config.json text. `source` names the file in error messages.
Expected<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source);

// Applies generation_config.json (eos ids, sampling defaults) on top of a parsed config.
Status ApplyGenerationConfig(const std::string& json_text, const std::string& source,
                             ModelConfig* config);

// Reads <dir>/config.json and, if present, <dir>/generation_config.json.
Expected<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace gs
