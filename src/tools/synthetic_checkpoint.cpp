#include "tools/synthetic_checkpoint.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "tools/checkpoint_writer.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

using nlohmann::json;

// splitmix64: fast enough to fill 17 GB in seconds; quality is irrelevant here.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

uint64_t NameHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// How a tensor's bytes are made: each kind is valid for what reads it.
enum class Fill {
  kBytes,       // packed E2M1 codes: any byte
  kScales,      // E4M3 block scales in [2^-4, 8): never NaN, never zero
  kSmallBf16,   // weights: ±[2^-9, 2^-5)
  kNormBf16,    // norms and scalars: [0.5, 2)
  kGlobalF32,   // one compressed-tensors global divisor
};

struct Planned {
  TensorPlan plan;
  Fill fill;
};

void FillBytes(Fill fill, uint64_t seed, std::vector<uint8_t>& out) {
  Rng rng(seed);
  if (fill == Fill::kGlobalF32) {
    const float divisor = 6.0f * 448.0f / 0.05f;  // amax 0.05, as a quantizer would write
    std::memcpy(out.data(), &divisor, 4);
    return;
  }
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t r = rng.Next();
    const size_t n = std::min<size_t>(8, out.size() - i);
    if (fill == Fill::kBytes) {
      std::memcpy(&out[i], &r, n);
      continue;
    }
    for (size_t k = 0; k < n; ++k, r >>= 8) {
      uint8_t b = static_cast<uint8_t>(r);
      if (fill == Fill::kScales) {
        b = static_cast<uint8_t>(0x18 + b % 0x38);  // exponent fields 3..9, sign clear
      } else if (k % 2 == 1) {  // high byte of a little-endian bf16
        const bool norm = fill == Fill::kNormBf16;
        b = norm ? 0x3f : static_cast<uint8_t>((b & 0x80) | (0x3b + (b & 1)));
      }
      out[i + k] = b;
    }
  }
}

class Planner {
 public:
  Planner(const ModelConfig& c, SyntheticFormat f)
      : c_(c), ct_(f == SyntheticFormat::kCompressedTensors),
        p_(c.multimodal ? "model.language_model." : "model.") {}

  std::vector<Planned> Plan() {
    Add(p_ + "embed_tokens.weight", DType::kBF16, {c_.vocab_size, c_.hidden_size}, Fill::kSmallBf16);
    Add(p_ + "norm.weight", DType::kBF16, {c_.hidden_size}, Fill::kNormBf16);
    for (int l = 0; l < c_.num_layers; ++l) Layer(l);
    return std::move(out_);
  }

 private:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Fill fill) {
    out_.push_back({{name, dtype, std::move(shape)}, fill});
  }

  void Linear(const std::string& m, int64_t rows, int64_t cols, bool nvfp4) {
    if (!nvfp4) return Add(m + ".weight", DType::kBF16, {rows, cols}, Fill::kSmallBf16);
    Add(m + ".weight_packed", DType::kU8, {rows, cols / 2}, Fill::kBytes);
    Add(m + ".weight_scale", DType::kF8E4M3, {rows, cols / 16}, Fill::kScales);
    Add(m + ".weight_global_scale", DType::kF32, {1}, Fill::kGlobalF32);
    Add(m + ".input_global_scale", DType::kF32, {1}, Fill::kGlobalF32);
  }

  void Layer(int l) {
    const LayerConfig& lc = c_.layers[static_cast<size_t>(l)];
    const std::string p = StrCat(p_, "layers.", l, ".");
    const int64_t h = c_.hidden_size, hd = lc.head_dim, heads = c_.num_heads;
    Linear(p + "self_attn.q_proj", heads * hd, h, ct_);
    Linear(p + "self_attn.k_proj", lc.num_kv_heads * hd, h, ct_);
    if (!lc.k_eq_v) Linear(p + "self_attn.v_proj", lc.num_kv_heads * hd, h, ct_);
    Linear(p + "self_attn.o_proj", h, heads * hd, ct_);
    Add(p + "self_attn.q_norm.weight", DType::kBF16, {hd}, Fill::kNormBf16);
    Add(p + "self_attn.k_norm.weight", DType::kBF16, {hd}, Fill::kNormBf16);
    std::vector<std::string> norms = {"input_layernorm", "post_attention_layernorm",
                                      "pre_feedforward_layernorm", "post_feedforward_layernorm"};
    if (c_.enable_moe_block) {
      norms.insert(norms.end(), {"pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                                 "post_feedforward_layernorm_2"});
    }
    for (const std::string& n : norms) Add(p + n + ".weight", DType::kBF16, {h}, Fill::kNormBf16);
    Add(p + "layer_scalar", DType::kBF16, {1}, Fill::kNormBf16);
    const int64_t inter = c_.intermediate_size;
    Linear(p + "mlp.gate_proj", inter, h, ct_);
    Linear(p + "mlp.up_proj", inter, h, ct_);
    Linear(p + "mlp.down_proj", h, inter, ct_);
    if (c_.enable_moe_block) Moe(p);
  }

  void Moe(const std::string& p) {
    const int64_t h = c_.hidden_size, e = c_.num_experts, inter = c_.moe_intermediate_size;
    Linear(p + "router.proj", e, h, false);  // both recipes keep the router in BF16
    Add(p + "router.scale", DType::kBF16, {h}, Fill::kNormBf16);
    Add(p + "router.per_expert_scale", DType::kBF16, {e}, Fill::kNormBf16);
    if (!ct_) {
      Add(p + "experts.gate_up_proj", DType::kBF16, {e, 2 * inter, h}, Fill::kSmallBf16);
      Add(p + "experts.down_proj", DType::kBF16, {e, h, inter}, Fill::kSmallBf16);
      return;
    }
    for (int64_t x = 0; x < e; ++x) {
      const std::string m = StrCat(p, "experts.", x, ".");
      Linear(m + "gate_proj", inter, h, true);
      Linear(m + "up_proj", inter, h, true);
      Linear(m + "down_proj", h, inter, true);
    }
  }

  const ModelConfig& c_;
  bool ct_;
  std::string p_;
  std::vector<Planned> out_;
};

// The compressed-tensors declaration RedHatAI's NVFP4 checkpoints carry (the fields we read).
json CompressedTensorsConfig() {
  const json args = {{"num_bits", 4}, {"type", "float"}, {"symmetric", true}, {"group_size", 16},
                     {"strategy", "tensor_group"}, {"dynamic", false}};
  json act = args;
  act["dynamic"] = "local";
  return {{"quant_method", "compressed-tensors"},
          {"format", "nvfp4-pack-quantized"},
          {"quantization_status", "compressed"},
          {"ignore", {"lm_head", "re:.*router.*", "re:.*vision_tower.*", "re:.*embed_vision.*"}},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}}, {"format", "nvfp4-pack-quantized"}, {"weights", args},
              {"input_activations", act}}}}}};
}

// Keeps the first n layers of config.json (text_config's when multimodal).
void TruncateLayers(json& cfg, int n) {
  json& t = cfg.contains("text_config") ? cfg["text_config"] : cfg;
  t["num_hidden_layers"] = n;
  if (t.contains("layer_types") && t["layer_types"].is_array() &&
      t["layer_types"].size() > static_cast<size_t>(n)) {
    t["layer_types"].erase(t["layer_types"].begin() + n, t["layer_types"].end());
  }
  if (t.contains("per_layer_config") && t["per_layer_config"].is_object()) {
    json kept = json::object();
    for (const auto& [key, value] : t["per_layer_config"].items()) {
      if (key.find_first_not_of("0123456789") == std::string::npos && !key.empty() &&
          key.size() < 6 && std::stoi(key) < n) {
        kept[key] = value;
      }
    }
    t["per_layer_config"] = kept;
  }
}

}  // namespace

Status WriteSyntheticCheckpoint(const SyntheticCheckpointOptions& o) {
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(o.config_path));
  json cfg = json::parse(text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    return MakeError(o.config_path, ": not a valid JSON object");
  }
  cfg.erase("quantization_config");
  if (cfg.contains("text_config") && cfg["text_config"].is_object()) {
    cfg["text_config"].erase("quantization_config");
  }
  if (o.num_layers > 0) TruncateLayers(cfg, o.num_layers);
  if (o.format == SyntheticFormat::kCompressedTensors) cfg["quantization_config"] = CompressedTensorsConfig();
  GS_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(cfg.dump(), o.config_path));
  if (config.hidden_size % 16 || config.intermediate_size % 16 || config.moe_intermediate_size % 16) {
    return MakeError(o.config_path, ": hidden and intermediate sizes must be multiples of 16 for NVFP4");
  }

  std::vector<OutputTensor> tensors;
  for (Planned& t : Planner(config, o.format).Plan()) {
    const uint64_t seed = o.seed ^ NameHash(t.plan.name);
    uint64_t bytes = DTypeSize(t.plan.dtype);
    for (int64_t d : t.plan.shape) bytes *= static_cast<uint64_t>(d);
    tensors.push_back({std::move(t.plan),
                       [fill = t.fill, seed, bytes](std::vector<uint8_t>& scratch)
                           -> Expected<std::span<const uint8_t>> {
                         scratch.resize(bytes);
                         FillBytes(fill, seed, scratch);
                         return std::span<const uint8_t>(scratch);
                       }});
  }
  GS_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Begin(o.output_dir, o.overwrite));
  GS_RETURN_IF_ERROR(writer->WriteTensors(tensors, o.max_shard_bytes, "writing"));
  GS_RETURN_IF_ERROR(writer->WriteJson("config.json", cfg));
  return writer->Commit();
}

}  // namespace gs
