#include "model/weights.h"

#include <cstdio>

#include "model/formats/formats.h"

namespace gs {
namespace {

Expected<std::string> DetectPrefix(const TensorStore& store) {
  for (const char* p : {"model.language_model.", "model.", ""}) {
    if (store.Find(StrCat(p, "embed_tokens.weight"))) return std::string(p);
  }
  return MakeError("checkpoint has no token embedding (looked for "
                   "'model.language_model.embed_tokens.weight' and 'model.embed_tokens.weight')");
}

class LayerBinder {
 public:
  LayerBinder(const ModelConfig& c, const TensorStore& s, const QuantizationInfo& q,
              std::string prefix)
      : c_(c), s_(s), q_(q), p_(std::move(prefix)) {}

  Expected<LayerWeights> Bind(int index) const {
    const LayerConfig& lc = c_.layers[static_cast<size_t>(index)];
    const std::string p = StrCat(p_, "layers.", index, ".");
    const int64_t h = c_.hidden_size;
    LayerWeights w;
    GS_RETURN_IF_ERROR(BindAttention(p, lc, &w.attn));
    GS_ASSIGN_OR_RETURN(w.input_norm, LoadVector(s_, p + "input_layernorm.weight", h));
    GS_ASSIGN_OR_RETURN(w.post_attn_norm, LoadVector(s_, p + "post_attention_layernorm.weight", h));
    GS_ASSIGN_OR_RETURN(w.pre_ffn_norm, LoadVector(s_, p + "pre_feedforward_layernorm.weight", h));
    GS_ASSIGN_OR_RETURN(w.post_ffn_norm, LoadVector(s_, p + "post_feedforward_layernorm.weight", h));
    GS_ASSIGN_OR_RETURN(w.layer_scalar, LoadScalar(s_, p + "layer_scalar"));
    const int64_t inter = c_.intermediate_size;
    GS_ASSIGN_OR_RETURN(w.mlp_gate, LoadLinear(s_, q_, p + "mlp.gate_proj", inter, h));
    GS_ASSIGN_OR_RETURN(w.mlp_up, LoadLinear(s_, q_, p + "mlp.up_proj", inter, h));
    GS_ASSIGN_OR_RETURN(w.mlp_down, LoadLinear(s_, q_, p + "mlp.down_proj", h, inter));
    if (c_.enable_moe_block) GS_RETURN_IF_ERROR(BindMoe(p, &w));
    return w;
  }

 private:
  Status BindAttention(const std::string& p, const LayerConfig& lc, AttentionWeights* a) const {
    const int64_t h = c_.hidden_size, hd = lc.head_dim;
    const int64_t q_out = c_.num_heads * hd, kv_out = lc.num_kv_heads * hd;
    GS_ASSIGN_OR_RETURN(a->q, LoadLinear(s_, q_, p + "self_attn.q_proj", q_out, h));
    GS_ASSIGN_OR_RETURN(a->k, LoadLinear(s_, q_, p + "self_attn.k_proj", kv_out, h));
    if (!lc.k_eq_v) {
      GS_ASSIGN_OR_RETURN(a->v, LoadLinear(s_, q_, p + "self_attn.v_proj", kv_out, h));
    }
    GS_ASSIGN_OR_RETURN(a->o, LoadLinear(s_, q_, p + "self_attn.o_proj", h, q_out));
    GS_ASSIGN_OR_RETURN(a->q_norm, LoadVector(s_, p + "self_attn.q_norm.weight", hd));
    GS_ASSIGN_OR_RETURN(a->k_norm, LoadVector(s_, p + "self_attn.k_norm.weight", hd));
    return Ok();
  }

  Status BindMoe(const std::string& p, LayerWeights* w) const {
    const int64_t h = c_.hidden_size, e = c_.num_experts;
    GS_ASSIGN_OR_RETURN(w->pre_ffn_norm_2, LoadVector(s_, p + "pre_feedforward_layernorm_2.weight", h));
    GS_ASSIGN_OR_RETURN(w->post_ffn_norm_1, LoadVector(s_, p + "post_feedforward_layernorm_1.weight", h));
    GS_ASSIGN_OR_RETURN(w->post_ffn_norm_2, LoadVector(s_, p + "post_feedforward_layernorm_2.weight", h));
    GS_ASSIGN_OR_RETURN(w->router, LoadLinear(s_, q_, p + "router.proj", e, h));
    GS_ASSIGN_OR_RETURN(w->router_scale, LoadVector(s_, p + "router.scale", h));
    GS_ASSIGN_OR_RETURN(w->per_expert_scale, LoadVector(s_, p + "router.per_expert_scale", e));
    return BindExperts(p, &w->experts);
  }

  // Experts come fused (BF16, transformers) or one module per expert (NVFP4 repacks), under
  // `experts.` or `moe.experts.`.
  Status BindExperts(const std::string& p, ExpertBank* bank) const {
    const int64_t h = c_.hidden_size, inter = c_.moe_intermediate_size;
    const TensorView* fused_gu = s_.Find(p + "experts.gate_up_proj");
    if (fused_gu) {
      const TensorView* fused_down = s_.Find(p + "experts.down_proj");
      if (!fused_down) return MakeError("checkpoint is missing tensor '", p, "experts.down_proj'");
      for (int e = 0; e < c_.num_experts; ++e) {
        GS_ASSIGN_OR_RETURN(ExpertWeights ew, LoadFusedBf16Expert(*fused_gu, *fused_down, e, h, inter));
        bank->experts.push_back(std::move(ew));
      }
      return Ok();
    }
    std::string base = p + "experts.";
    if (!HasExpertModule(base + "0.gate_proj") && HasExpertModule(p + "moe.experts.0.gate_proj")) {
      base = p + "moe.experts.";
    }
    for (int e = 0; e < c_.num_experts; ++e) {
      const std::string m = StrCat(base, e, ".");
      if (!HasExpertModule(m + "gate_proj")) {
        return MakeError("checkpoint is missing expert ", e, " of layer '", p,
                         "' (no tensor '", m, "gate_proj.weight' or fused 'experts.gate_up_proj')");
      }
      ExpertWeights ew;
      GS_ASSIGN_OR_RETURN(ew.gate, LoadLinear(s_, q_, m + "gate_proj", inter, h));
      GS_ASSIGN_OR_RETURN(ew.up, LoadLinear(s_, q_, m + "up_proj", inter, h));
      GS_ASSIGN_OR_RETURN(ew.down, LoadLinear(s_, q_, m + "down_proj", h, inter));
      bank->experts.push_back(std::move(ew));
    }
    return Ok();
  }

  bool HasExpertModule(const std::string& m) const {
    return s_.Find(m + ".weight") || s_.Find(m + ".weight_packed");
  }

  const ModelConfig& c_;
  const TensorStore& s_;
  const QuantizationInfo& q_;
  std::string p_;
};

bool IsNonTextTensor(const std::string& name) {
  for (const char* part : {"vision_tower.", "embed_vision.", "audio_tower.", "embed_audio."}) {
    if (name.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::string Gemma4Weights::Describe() const {
  int nvfp4 = 0, bf16 = 0;
  size_t bytes = embed.bytes();
  auto count = [&](const QuantizedLinear& q) {
    if (q.empty()) return;
    (q.format == WeightFormat::kNvfp4 ? nvfp4 : bf16)++;
    bytes += q.bytes();
  };
  for (const auto& l : layers) {
    for (const auto* q : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp_gate, &l.mlp_up,
                          &l.mlp_down, &l.router}) {
      count(*q);
    }
    for (const auto& e : l.experts.experts) {
      count(e.gate);
      count(e.up);
      count(e.down);
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s: %d nvfp4 / %d bf16 linears, %.2f GB of text weights",
                QuantMethodName(quant.method), nvfp4, bf16, static_cast<double>(bytes) / 1e9);
  return buf;
}

Expected<Gemma4Weights> BindGemma4Weights(const ModelConfig& config,
                                          std::shared_ptr<const TensorStore> store,
                                          const QuantizationInfo& quant,
                                          const std::function<void()>& after_each_layer) {
  Gemma4Weights w;
  w.store = store;
  w.quant = quant;
  GS_ASSIGN_OR_RETURN(w.prefix, DetectPrefix(*store));
  GS_ASSIGN_OR_RETURN(w.embed, LoadBf16Linear(*store, w.prefix + "embed_tokens",
                                              config.vocab_size, config.hidden_size));
  GS_ASSIGN_OR_RETURN(w.final_norm, LoadVector(*store, w.prefix + "norm.weight", config.hidden_size));
  LayerBinder binder(config, *store, quant, w.prefix);
  for (int i = 0; i < config.num_layers; ++i) {
    GS_ASSIGN_OR_RETURN(LayerWeights lw, binder.Bind(i));
    w.layers.push_back(std::move(lw));
    if (after_each_layer) after_each_layer();
  }
  for (const auto& [name, view] : store->all()) w.skipped_tensors += IsNonTextTensor(name);
  return w;
}

Expected<Gemma4Weights> LoadGemma4Weights(const ModelConfig& config, const std::string& dir) {
  GS_ASSIGN_OR_RETURN(QuantizationInfo quant, LoadQuantizationInfo(dir));
  GS_ASSIGN_OR_RETURN(TensorStore store, TensorStore::OpenDirectory(dir));
  auto shared = std::make_shared<const TensorStore>(std::move(store));
  return BindGemma4Weights(config, std::move(shared), quant);
}

}  // namespace gs
