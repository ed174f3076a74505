#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/mapped_file.h"

namespace gs {
namespace {

using nlohmann::json;

// Field access with errors that name the file and the JSON path of the field.
class Fields {
 public:
  Fields(const json& obj, std::string source, std::string path)
      : obj_(obj), source_(std::move(source)), path_(std::move(path)) {}

  bool Has(const char* key) const { return obj_.contains(key) && !obj_[key].is_null(); }
  std::string Where(const char* key) const { return StrCat(source_, ": field '", path_, key, "'"); }

  Expected<int> Int(const char* key) const {
    if (!Has(key)) return MakeError(Where(key), " is missing");
    const json& v = obj_[key];
    if (!v.is_number_integer()) return MakeError(Where(key), " must be an integer, got ", v.dump());
    const int64_t x = v.get<int64_t>();
    if (x < 0 || x > (int64_t{1} << 31) - 1) return MakeError(Where(key), " is out of range: ", x);
    return static_cast<int>(x);
  }
  Expected<int> Int(const char* key, int fallback) const { return Has(key) ? Int(key) : fallback; }

  Expected<double> Number(const char* key) const {
    if (!Has(key)) return MakeError(Where(key), " is missing");
    const json& v = obj_[key];
    if (!v.is_number()) return MakeError(Where(key), " must be a number, got ", v.dump());
    return v.get<double>();
  }
  Expected<double> Number(const char* key, double fallback) const {
    return Has(key) ? Number(key) : fallback;
  }

  Expected<bool> Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    if (!obj_[key].is_boolean()) return MakeError(Where(key), " must be true or false");
    return obj_[key].get<bool>();
  }

  Expected<std::string> String(const char* key, const std::string& fallback) const {
    if (!Has(key)) return fallback;
    if (!obj_[key].is_string()) return MakeError(Where(key), " must be a string");
    return obj_[key].get<std::string>();
  }

  Expected<Fields> Object(const char* key) const {
    if (!Has(key)) return MakeError(Where(key), " is missing");
    if (!obj_[key].is_object()) return MakeError(Where(key), " must be an object");
    return Fields(obj_[key], source_, StrCat(path_, key, "."));
  }

  // A token id field may be an int or a list of ints.
  Expected<std::vector<int>> IntList(const char* key) const {
    std::vector<int> out;
    if (!Has(key)) return out;
    const json& v = obj_[key];
    if (v.is_number_integer()) {
      out.push_back(v.get<int>());
      return out;
    }
    if (!v.is_array()) return MakeError(Where(key), " must be an integer or a list of integers");
    for (const json& e : v) {
      if (!e.is_number_integer()) return MakeError(Where(key), " must hold only integers");
      out.push_back(e.get<int>());
    }
    return out;
  }

  const json& raw() const { return obj_; }
  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }

 private:
  const json& obj_;
  std::string source_, path_;
};

Expected<RopeConfig> ParseRope(const Fields& f) {
  RopeConfig rope;
  GS_ASSIGN_OR_RETURN(std::string type, f.String("rope_type", "default"));
  if (type == "default") {
    rope.type = RopeType::kDefault;
  } else if (type == "proportional") {
    rope.type = RopeType::kProportional;
  } else {
    return MakeError(f.Where("rope_type"), ": RoPE type '", type,
                     "' is not supported (expected default or proportional)");
  }
  GS_ASSIGN_OR_RETURN(rope.theta, f.Number("rope_theta"));
  GS_ASSIGN_OR_RETURN(rope.partial_rotary_factor, f.Number("partial_rotary_factor", 1.0));
  GS_ASSIGN_OR_RETURN(rope.factor, f.Number("factor", 1.0));
  if (rope.theta <= 0 || rope.factor <= 0 || rope.partial_rotary_factor <= 0 ||
      rope.partial_rotary_factor > 1) {
    return MakeError(f.source(), ": field '", f.path(), "' has out-of-range RoPE parameters");
  }
  return rope;
}

// Features of other Gemma 4 sizes that this engine does not run yet: refuse, never run wrong.
Status RejectUnsupported(const Fields& t) {
  GS_ASSIGN_OR_RETURN(int ple, t.Int("hidden_size_per_layer_input", 0));
  if (ple != 0) {
    return MakeError(t.Where("hidden_size_per_layer_input"), " = ", ple,
                     ": per-layer embeddings (Gemma 4 E2B/E4B) are not supported yet");
  }
  GS_ASSIGN_OR_RETURN(int shared, t.Int("num_kv_shared_layers", 0));
  if (shared != 0) {
    return MakeError(t.Where("num_kv_shared_layers"), " = ", shared,
                     ": KV-shared layers (Gemma 4 E2B/E4B) are not supported yet");
  }
  GS_ASSIGN_OR_RETURN(bool wide, t.Bool("use_double_wide_mlp", false));
  if (wide) return MakeError(t.Where("use_double_wide_mlp"), ": double-wide MLP is not supported yet");
  if (t.Has("attn_logit_softcapping")) {
    return MakeError(t.Where("attn_logit_softcapping"),
                     ": attention logit softcapping is not part of Gemma 4 and is not supported");
  }
  GS_ASSIGN_OR_RETURN(std::string bidir, t.String("use_bidirectional_attention", "vision"));
  if (bidir != "vision") {
    return MakeError(t.Where("use_bidirectional_attention"), " = '", bidir,
                     "': only \"vision\" (or absent) is supported");
  }
  GS_ASSIGN_OR_RETURN(bool bias, t.Bool("attention_bias", false));
  if (bias) return MakeError(t.Where("attention_bias"), ": attention bias is not supported");
  return Ok();
}

// Global-layer geometry comes either from global_head_dim / num_global_key_value_heads (older
// transformers) or from per_layer_config {"<idx>": {"head_dim", "num_key_value_heads"}} (newer).
Status ApplyLayerGeometry(const Fields& t, ModelConfig* c) {
  GS_ASSIGN_OR_RETURN(int head_dim, t.Int("head_dim"));
  GS_ASSIGN_OR_RETURN(int kv_heads, t.Int("num_key_value_heads"));
  GS_ASSIGN_OR_RETURN(int global_head_dim, t.Int("global_head_dim", head_dim));
  GS_ASSIGN_OR_RETURN(int global_kv, t.Int("num_global_key_value_heads", kv_heads));
  GS_ASSIGN_OR_RETURN(bool k_eq_v, t.Bool("attention_k_eq_v", false));
  for (LayerConfig& layer : c->layers) {
    const bool global = layer.kind == LayerKind::kGlobal;
    layer.head_dim = global ? global_head_dim : head_dim;
    layer.num_kv_heads = global ? global_kv : kv_heads;
    layer.k_eq_v = global && k_eq_v;
  }
  if (!t.Has("per_layer_config")) return Ok();
  const auto& plc = t.raw()["per_layer_config"];
  if (!plc.is_object()) return MakeError(t.Where("per_layer_config"), " must be an object");
  for (const auto& [key, value] : plc.items()) {
    char* end = nullptr;
    const long idx = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || idx < 0 || idx >= c->num_layers) {
      return MakeError(t.Where("per_layer_config"), ": key '", key,
                       "' is not a layer index below num_hidden_layers");
    }
    if (!value.is_object()) {
      return MakeError(t.Where("per_layer_config"), "['", key, "'] must be an object");
    }
    Fields lf(value, t.source(), StrCat(t.path(), "per_layer_config.", key, "."));
    LayerConfig& layer = c->layers[static_cast<size_t>(idx)];
    GS_ASSIGN_OR_RETURN(layer.head_dim, lf.Int("head_dim", layer.head_dim));
    GS_ASSIGN_OR_RETURN(layer.num_kv_heads, lf.Int("num_key_value_heads", layer.num_kv_heads));
  }
  return Ok();
}

Status ParseLayers(const Fields& t, ModelConfig* c) {
  if (!t.Has("layer_types")) return MakeError(t.Where("layer_types"), " is missing");
  const json& types = t.raw()["layer_types"];
  if (!types.is_array()) return MakeError(t.Where("layer_types"), " must be a list of strings");
  if (static_cast<int>(types.size()) != c->num_layers) {
    return MakeError(t.Where("layer_types"), " has ", types.size(),
                     " entries but num_hidden_layers is ", c->num_layers);
  }
  GS_ASSIGN_OR_RETURN(Fields rope_params, t.Object("rope_parameters"));
  RopeConfig sliding_rope, global_rope;
  bool have_sliding = false, have_global = false;
  c->layers.resize(static_cast<size_t>(c->num_layers));
  for (size_t i = 0; i < types.size(); ++i) {
    if (!types[i].is_string()) return MakeError(t.Where("layer_types"), "[", i, "] must be a string");
    const std::string type = types[i].get<std::string>();
    if (type == "sliding_attention") {
      c->layers[i].kind = LayerKind::kSliding;
      have_sliding = true;
    } else if (type == "full_attention") {
      c->layers[i].kind = LayerKind::kGlobal;
      have_global = true;
    } else {
      return MakeError(t.Where("layer_types"), "[", i, "] = '", type,
                       "' (expected sliding_attention or full_attention)");
    }
  }
  if (have_sliding) {
    GS_ASSIGN_OR_RETURN(Fields f, rope_params.Object("sliding_attention"));
    GS_ASSIGN_OR_RETURN(sliding_rope, ParseRope(f));
  }
  if (have_global) {
    GS_ASSIGN_OR_RETURN(Fields f, rope_params.Object("full_attention"));
    GS_ASSIGN_OR_RETURN(global_rope, ParseRope(f));
  }
  for (LayerConfig& layer : c->layers) {
    layer.rope = layer.kind == LayerKind::kGlobal ? global_rope : sliding_rope;
  }
  return ApplyLayerGeometry(t, c);
}

Status ParseMoe(const Fields& t, ModelConfig* c) {
  GS_ASSIGN_OR_RETURN(c->enable_moe_block, t.Bool("enable_moe_block", false));
  if (!c->enable_moe_block) return Ok();
  GS_ASSIGN_OR_RETURN(c->num_experts, t.Int("num_experts"));
  GS_ASSIGN_OR_RETURN(c->top_k_experts, t.Int("top_k_experts"));
  GS_ASSIGN_OR_RETURN(c->moe_intermediate_size, t.Int("moe_intermediate_size"));
  if (c->num_experts < 1 || c->top_k_experts < 1 || c->top_k_experts > c->num_experts) {
    return MakeError(t.Where("top_k_experts"), " must be between 1 and num_experts (",
                     c->num_experts, ")");
  }
  return Ok();
}

Status Validate(const Fields& t, const ModelConfig& c) {
  if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.vocab_size <= 0) {
    return MakeError(t.source(), ": hidden_size, num_hidden_layers, num_attention_heads and "
                     "vocab_size must be positive");
  }
  if (c.hidden_activation != "gelu_pytorch_tanh") {
    return MakeError(t.Where("hidden_activation"), " = '", c.hidden_activation,
                     "': Gemma 4 uses gelu_pytorch_tanh; nothing else is supported");
  }
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerConfig& l = c.layers[i];
    if (l.head_dim <= 0 || l.head_dim % 2 != 0 || l.num_kv_heads <= 0 ||
        c.num_heads % l.num_kv_heads != 0) {
      return MakeError(t.source(), ": layer ", i, " has head_dim ", l.head_dim, " and ",
                       l.num_kv_heads, " KV heads, which do not fit ", c.num_heads,
                       " attention heads");
    }
  }
  if (c.sliding_window <= 0 && c.num_layers_of(LayerKind::kSliding) > 0) {
    return MakeError(t.Where("sliding_window"), " must be positive when sliding layers exist");
  }
  if (!c.tie_word_embeddings) {
    return MakeError(t.Where("tie_word_embeddings"),
                     " = false: an untied lm_head is not supported yet (Gemma 4 ties it)");
  }
  return Ok();
}

Expected<ModelConfig> ParseText(const Fields& t, ModelConfig c) {
  GS_RETURN_IF_ERROR(RejectUnsupported(t));
  GS_ASSIGN_OR_RETURN(c.hidden_size, t.Int("hidden_size"));
  GS_ASSIGN_OR_RETURN(c.num_layers, t.Int("num_hidden_layers"));
  GS_ASSIGN_OR_RETURN(c.num_heads, t.Int("num_attention_heads"));
  GS_ASSIGN_OR_RETURN(c.vocab_size, t.Int("vocab_size"));
  GS_ASSIGN_OR_RETURN(c.sliding_window, t.Int("sliding_window", 0));
  GS_ASSIGN_OR_RETURN(c.max_position_embeddings, t.Int("max_position_embeddings", 131072));
  GS_ASSIGN_OR_RETURN(c.rms_norm_eps, t.Number("rms_norm_eps", 1e-6));
  GS_ASSIGN_OR_RETURN(c.final_logit_softcapping, t.Number("final_logit_softcapping", 0.0));
  GS_ASSIGN_OR_RETURN(c.hidden_activation, t.String("hidden_activation", "gelu_pytorch_tanh"));
  GS_ASSIGN_OR_RETURN(c.intermediate_size, t.Int("intermediate_size"));
  GS_ASSIGN_OR_RETURN(c.bos_token_id, t.Int("bos_token_id", c.bos_token_id));
  GS_ASSIGN_OR_RETURN(c.pad_token_id, t.Int("pad_token_id", c.pad_token_id));
  GS_ASSIGN_OR_RETURN(std::vector<int> eos, t.IntList("eos_token_id"));
  if (c.eos_token_ids.empty()) c.eos_token_ids = eos;
  GS_RETURN_IF_ERROR(ParseMoe(t, &c));
  GS_RETURN_IF_ERROR(ParseLayers(t, &c));
  GS_RETURN_IF_ERROR(Validate(t, c));
  return c;
}

Expected<VisionConfig> ParseVision(const Fields& v) {
  VisionConfig vc;
  GS_ASSIGN_OR_RETURN(vc.hidden_size, v.Int("hidden_size"));
  GS_ASSIGN_OR_RETURN(vc.num_layers, v.Int("num_hidden_layers"));
  GS_ASSIGN_OR_RETURN(vc.num_heads, v.Int("num_attention_heads"));
  GS_ASSIGN_OR_RETURN(vc.head_dim, v.Int("head_dim"));
  GS_ASSIGN_OR_RETURN(vc.intermediate_size, v.Int("intermediate_size"));
  GS_ASSIGN_OR_RETURN(vc.patch_size, v.Int("patch_size"));
  GS_ASSIGN_OR_RETURN(vc.pooling_kernel_size, v.Int("pooling_kernel_size"));
  GS_ASSIGN_OR_RETURN(vc.position_embedding_size, v.Int("position_embedding_size"));
  GS_ASSIGN_OR_RETURN(vc.default_output_length, v.Int("default_output_length", 280));
  GS_ASSIGN_OR_RETURN(vc.rms_norm_eps, v.Number("rms_norm_eps", 1e-6));
  GS_ASSIGN_OR_RETURN(vc.standardize, v.Bool("standardize", false));
  GS_ASSIGN_OR_RETURN(int kv_heads, v.Int("num_key_value_heads", vc.num_heads));
  if (kv_heads != vc.num_heads) {
    return MakeError(v.Where("num_key_value_heads"), " = ", kv_heads,
                     ": the vision encoder is multi-head (num_attention_heads ", vc.num_heads, ")");
  }
  GS_ASSIGN_OR_RETURN(bool clipped, v.Bool("use_clipped_linears", false));
  if (clipped) {
    return MakeError(v.Where("use_clipped_linears"),
                     ": clipped vision linears (Gemma 4 E2B/E4B) are not supported yet");
  }
  if (vc.hidden_size <= 0 || vc.num_layers < 0 || vc.num_heads <= 0 || vc.head_dim <= 0 ||
      vc.head_dim % 4 != 0 || vc.intermediate_size <= 0 || vc.patch_size <= 0 ||
      vc.pooling_kernel_size <= 0 || vc.position_embedding_size <= 0) {
    return MakeError(v.source(), ": vision_config has out-of-range sizes (head_dim must be a "
                     "positive multiple of 4 for the 2-D RoPE)");
  }
  if (v.Has("rope_parameters")) {
    GS_ASSIGN_OR_RETURN(Fields rp, v.Object("rope_parameters"));
    GS_ASSIGN_OR_RETURN(vc.rope_theta, rp.Number("rope_theta", 100.0));
  }
  return vc;
}

Expected<ModelConfig> ParseRoot(const json& root, const std::string& source) {
  if (!root.is_object()) return MakeError(source, ": the top level must be a JSON object");
  Fields top(root, source, "");
  ModelConfig c;
  if (top.Has("architectures")) {
    const json& a = root["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      return MakeError(top.Where("architectures"), " must be a non-empty list of strings");
    }
    c.architecture = a[0].get<std::string>();
  }
  GS_ASSIGN_OR_RETURN(std::string model_type, top.String("model_type", ""));
  if (top.Has("audio_config")) {
    return MakeError(top.Where("audio_config"), ": audio input (Gemma 4 E2B/E4B) is not supported yet");
  }
  const bool has_text_config = top.Has("text_config");
  if (!has_text_config && model_type != "gemma4_text" && model_type != "gemma4") {
    return MakeError(top.Where("model_type"), " = '", model_type,
                     "': not a Gemma 4 config (expected gemma4 or gemma4_text)");
  }
  if (has_text_config) {
    c.multimodal = true;
    GS_ASSIGN_OR_RETURN(std::vector<int> eos, top.IntList("eos_token_id"));
    c.eos_token_ids = eos;
    GS_ASSIGN_OR_RETURN(c.image_token_id, top.Int("image_token_id", -1));
    GS_ASSIGN_OR_RETURN(c.boi_token_id, top.Int("boi_token_id", -1));
    GS_ASSIGN_OR_RETURN(c.eoi_token_id, top.Int("eoi_token_id", -1));
    GS_ASSIGN_OR_RETURN(Fields text, top.Object("text_config"));
    GS_ASSIGN_OR_RETURN(c, ParseText(text, std::move(c)));
    if (top.Has("vision_config")) {
      GS_ASSIGN_OR_RETURN(Fields vf, top.Object("vision_config"));
      GS_ASSIGN_OR_RETURN(c.vision, ParseVision(vf));
    }
    GS_ASSIGN_OR_RETURN(c.tie_word_embeddings, top.Bool("tie_word_embeddings", true));
  } else {
    GS_ASSIGN_OR_RETURN(c, ParseText(top, std::move(c)));
    GS_ASSIGN_OR_RETURN(c.tie_word_embeddings, top.Bool("tie_word_embeddings", true));
  }
  if (!c.tie_word_embeddings) {
    return MakeError(top.Where("tie_word_embeddings"),
                     " = false: an untied lm_head is not supported yet (Gemma 4 ties it)");
  }
  return c;
}

}  // namespace

std::vector<float> RopeConfig::InverseFrequencies(int head_dim) const {
  const int pairs = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(pairs), 0.0f);
  // Proportional RoPE rotates only the first rotary_fraction*head_dim/2 pairs, but the exponent's
  // denominator stays the full head_dim (the Gemma 4 convention, reference §3.4).
  const int live = type == RopeType::kProportional
                       ? static_cast<int>(partial_rotary_factor * head_dim) / 2
                       : pairs;
  for (int i = 0; i < live && i < pairs; ++i) {
    const double exponent = 2.0 * i / head_dim;
    inv[static_cast<size_t>(i)] = static_cast<float>(1.0 / std::pow(theta, exponent) / factor);
  }
  return inv;
}

int ModelConfig::max_head_dim() const {
  int m = 0;
  for (const auto& l : layers) m = std::max(m, l.head_dim);
  return m;
}

int ModelConfig::num_layers_of(LayerKind kind) const {
  int n = 0;
  for (const auto& l : layers) n += l.kind == kind;
  return n;
}

int64_t ModelConfig::KvBytesPerToken(int layer, int bytes_per_element) const {
  const LayerConfig& l = layers[static_cast<size_t>(layer)];
  return int64_t{2} * l.num_kv_heads * l.head_dim * bytes_per_element;
}

Expected<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return MakeError(source, ": not valid JSON");
  try {
    return ParseRoot(root, source);
  } catch (const std::exception& e) {  // nlohmann conversions on unexpected shapes
    return MakeError(source, ": ", e.what());
  }
}

Status ApplyGenerationConfig(const std::string& json_text, const std::string& source,
                             ModelConfig* config) {
  json root = json::parse(json_text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return MakeError(source, ": not a valid JSON object");
  }
  Fields g(root, source, "");
  GS_ASSIGN_OR_RETURN(std::vector<int> eos, g.IntList("eos_token_id"));
  if (!eos.empty()) config->eos_token_ids = eos;
  GS_ASSIGN_OR_RETURN(config->bos_token_id, g.Int("bos_token_id", config->bos_token_id));
  GS_ASSIGN_OR_RETURN(config->pad_token_id, g.Int("pad_token_id", config->pad_token_id));
  auto& d = config->generation;
  GS_ASSIGN_OR_RETURN(d.do_sample, g.Bool("do_sample", d.do_sample));
  GS_ASSIGN_OR_RETURN(d.temperature, g.Number("temperature", d.temperature));
  GS_ASSIGN_OR_RETURN(d.top_k, g.Int("top_k", d.top_k));
  GS_ASSIGN_OR_RETURN(d.top_p, g.Number("top_p", d.top_p));
  GS_ASSIGN_OR_RETURN(d.min_p, g.Number("min_p", d.min_p));
  return Ok();
}

Expected<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  GS_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, path));
  const std::string gen_path = (std::filesystem::path(dir) / "generation_config.json").string();
  if (std::filesystem::exists(gen_path)) {
    GS_ASSIGN_OR_RETURN(std::string gen, ReadTextFile(gen_path));
    GS_RETURN_IF_ERROR(ApplyGenerationConfig(gen, gen_path, &config));
  }
  return config;
}

}  // namespace gs
