#include "model/vision_weights.h"

#include <cstring>

#include "model/formats/formats.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

constexpr const char* kTower = "model.vision_tower.";

Expected<std::vector<float>> LoadPositionTable(const TensorStore& s, const VisionConfig& vc) {
  const std::string name = StrCat(kTower, "patch_embedder.position_embedding_table");
  const TensorView* t = s.Find(name);
  if (!t) return MakeError("checkpoint is missing tensor '", name, "'");
  const std::vector<int64_t> want = {2, vc.position_embedding_size, vc.hidden_size};
  if (t->shape != want || (t->dtype != DType::kBF16 && t->dtype != DType::kF32)) {
    return MakeError(t->file, ": tensor '", name, "' is ", DTypeName(t->dtype), " ",
                     t->ShapeString(), ", expected BF16 or F32 [2, ", vc.position_embedding_size,
                     ", ", vc.hidden_size, "]");
  }
  std::vector<float> out(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t->dtype == DType::kF32) {
      std::memcpy(&out[i], t->data + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, t->data + 2 * i, 2);
      out[i] = Bf16ToFloat(b);
    }
  }
  return out;
}

Expected<VisionLayerWeights> BindLayer(const TensorStore& s, const VisionConfig& vc, int i) {
  const std::string p = StrCat(kTower, "encoder.layers.", i, ".");
  const int64_t h = vc.hidden_size, qd = int64_t{vc.num_heads} * vc.head_dim;
  const int64_t inter = vc.intermediate_size;
  VisionLayerWeights w;
  GS_ASSIGN_OR_RETURN(w.q, LoadBf16Linear(s, p + "self_attn.q_proj.linear", qd, h));
  GS_ASSIGN_OR_RETURN(w.k, LoadBf16Linear(s, p + "self_attn.k_proj.linear", qd, h));
  GS_ASSIGN_OR_RETURN(w.v, LoadBf16Linear(s, p + "self_attn.v_proj.linear", qd, h));
  GS_ASSIGN_OR_RETURN(w.o, LoadBf16Linear(s, p + "self_attn.o_proj.linear", h, qd));
  GS_ASSIGN_OR_RETURN(w.q_norm, LoadVector(s, p + "self_attn.q_norm.weight", vc.head_dim));
  GS_ASSIGN_OR_RETURN(w.k_norm, LoadVector(s, p + "self_attn.k_norm.weight", vc.head_dim));
  GS_ASSIGN_OR_RETURN(w.gate, LoadBf16Linear(s, p + "mlp.gate_proj.linear", inter, h));
  GS_ASSIGN_OR_RETURN(w.up, LoadBf16Linear(s, p + "mlp.up_proj.linear", inter, h));
  GS_ASSIGN_OR_RETURN(w.down, LoadBf16Linear(s, p + "mlp.down_proj.linear", h, inter));
  GS_ASSIGN_OR_RETURN(w.input_norm, LoadVector(s, p + "input_layernorm.weight", h));
  GS_ASSIGN_OR_RETURN(w.post_attn_norm, LoadVector(s, p + "post_attention_layernorm.weight", h));
  GS_ASSIGN_OR_RETURN(w.pre_ffn_norm, LoadVector(s, p + "pre_feedforward_layernorm.weight", h));
  GS_ASSIGN_OR_RETURN(w.post_ffn_norm, LoadVector(s, p + "post_feedforward_layernorm.weight", h));
  return w;
}

}  // namespace

Expected<VisionWeights> BindVisionWeights(const ModelConfig& config,
                                          std::shared_ptr<const TensorStore> store) {
  if (!config.vision) return MakeError("config.json has no vision_config: the model takes no images");
  const VisionConfig& vc = *config.vision;
  const TensorStore& s = *store;
  VisionWeights w;
  w.store = store;
  const int64_t patch_dim = int64_t{vc.patch_size} * vc.patch_size * 3;
  GS_ASSIGN_OR_RETURN(w.patch_proj, LoadBf16Linear(s, StrCat(kTower, "patch_embedder.input_proj"),
                                                   vc.hidden_size, patch_dim));
  GS_ASSIGN_OR_RETURN(w.position_table, LoadPositionTable(s, vc));
  for (int i = 0; i < vc.num_layers; ++i) {
    GS_ASSIGN_OR_RETURN(VisionLayerWeights lw, BindLayer(s, vc, i));
    w.layers.push_back(std::move(lw));
  }
  if (vc.standardize) {
    GS_ASSIGN_OR_RETURN(w.std_bias, LoadVector(s, StrCat(kTower, "std_bias"), vc.hidden_size));
    GS_ASSIGN_OR_RETURN(w.std_scale, LoadVector(s, StrCat(kTower, "std_scale"), vc.hidden_size));
  }
  GS_ASSIGN_OR_RETURN(w.projector, LoadBf16Linear(s, "model.embed_vision.embedding_projection",
                                                  config.hidden_size, vc.hidden_size));
  return w;
}

Expected<VisionWeights> LoadVisionWeights(const ModelConfig& config, const std::string& dir) {
  GS_ASSIGN_OR_RETURN(TensorStore store, TensorStore::OpenDirectory(dir));
  return BindVisionWeights(config, std::make_shared<const TensorStore>(std::move(store)));
}

}  // namespace gs
