#include "tools/demo_model.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cstring>
#include <random>

#include "model/nvfp4_quantize.h"
#include "model/safetensors.h"
#include "tools/demo_tokenizer.h"
#include "tools/embedded_files.h"
#include "tools/modelopt_config.h"
#include "util/mapped_file.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

using nlohmann::json;

constexpr int kHidden = 256, kLayers = 6, kHeads = 4, kHeadDim = 64, kGlobalHeadDim = 128;
constexpr int kKvHeads = 2, kGlobalKvHeads = 1, kWindow = 32, kVocab = 1024;
constexpr int kInter = 256, kExperts = 8, kTopK = 2, kMoeInter = 128;

bool IsGlobal(int layer) { return layer % 3 == 2; }

ModeloptDeclaration DemoDeclaration() {
  return {"gemmaserve make-demo-model", /*activations=*/true,
          {"lm_head", "*self_attn*", "*router*", "*embed_tokens*"}};
}

json DemoConfig() {
  json types = json::array();
  for (int l = 0; l < kLayers; ++l) types.push_back(IsGlobal(l) ? "full_attention" : "sliding_attention");
  return {
      {"architectures", {"Gemma4ForCausalLM"}},
      {"model_type", "gemma4_text"},
      {"hidden_size", kHidden},
      {"num_hidden_layers", kLayers},
      {"num_attention_heads", kHeads},
      {"num_key_value_heads", kKvHeads},
      {"head_dim", kHeadDim},
      {"global_head_dim", kGlobalHeadDim},
      {"num_global_key_value_heads", kGlobalKvHeads},
      {"attention_k_eq_v", true},
      {"layer_types", types},
      {"sliding_window", kWindow},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"full_attention",
         {{"rope_type", "proportional"}, {"rope_theta", 1000000.0}, {"partial_rotary_factor", 0.25}}}}},
      {"intermediate_size", kInter},
      {"enable_moe_block", true},
      {"num_experts", kExperts},
      {"top_k_experts", kTopK},
      {"moe_intermediate_size", kMoeInter},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"final_logit_softcapping", 30.0},
      {"rms_norm_eps", 1e-6},
      {"vocab_size", kVocab},
      {"max_position_embeddings", 4096},
      {"tie_word_embeddings", true},
      {"bos_token_id", 2},
      {"eos_token_id", 1},
      {"pad_token_id", 0},
      {"hidden_size_per_layer_input", 0},
      {"num_kv_shared_layers", 0},
      {"quantization_config", ModeloptQuantizationConfig(DemoDeclaration())},
  };
}

class TensorWriter {
 public:
  explicit TensorWriter(uint64_t seed) : rng_(seed) {}

  std::vector<float> Random(size_t n, float stddev) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng_);
    return v;
  }

  void Bf16(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    TensorToWrite t{name, DType::kBF16, std::move(shape), std::vector<uint8_t>(v.size() * 2)};
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t b = FloatToBf16(v[i]);
      t.bytes[2 * i] = static_cast<uint8_t>(b & 0xff);
      t.bytes[2 * i + 1] = static_cast<uint8_t>(b >> 8);
    }
    tensors_.push_back(std::move(t));
  }

  void F32Scalar(const std::string& name, float value) {
    TensorToWrite t{name, DType::kF32, {}, std::vector<uint8_t>(4)};
    std::memcpy(t.bytes.data(), &value, 4);
    tensors_.push_back(std::move(t));
  }

  // Norm-like vectors around 1 so the random model stays well conditioned.
  void Vector(const std::string& name, int64_t n, float center, float spread) {
    std::uniform_real_distribution<float> dist(center - spread, center + spread);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng_);
    Bf16(name, {n}, v);
  }

  void Linear(const std::string& prefix, int64_t rows, int64_t cols, bool nvfp4) {
    const auto w = Random(static_cast<size_t>(rows * cols), 1.0f / std::sqrt(static_cast<float>(cols)));
    if (!nvfp4) {
      Bf16(prefix + ".weight", {rows, cols}, w);
      return;
    }
    Nvfp4Weights q = QuantizeNvfp4(w.data(), rows, cols);
    tensors_.push_back({prefix + ".weight", DType::kU8, {rows, cols / 2}, std::move(q.codes)});
    tensors_.push_back({prefix + ".weight_scale", DType::kF8E4M3, {rows, cols / 16}, std::move(q.scales)});
    F32Scalar(prefix + ".weight_scale_2", q.global_scale);
    F32Scalar(prefix + ".input_scale", 1.0f / (6.0f * 448.0f));
  }

  std::vector<TensorToWrite>& tensors() { return tensors_; }

 private:
  std::mt19937_64 rng_;
  std::vector<TensorToWrite> tensors_;
};

void WriteLayer(TensorWriter& tw, int l) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const bool global = IsGlobal(l);
  const int hd = global ? kGlobalHeadDim : kHeadDim, kv = global ? kGlobalKvHeads : kKvHeads;
  tw.Linear(p + "self_attn.q_proj", kHeads * hd, kHidden, false);
  tw.Linear(p + "self_attn.k_proj", kv * hd, kHidden, false);
  if (!global) tw.Linear(p + "self_attn.v_proj", kv * hd, kHidden, false);
  tw.Linear(p + "self_attn.o_proj", kHidden, kHeads * hd, false);
  tw.Vector(p + "self_attn.q_norm.weight", hd, 1.0f, 0.2f);
  tw.Vector(p + "self_attn.k_norm.weight", hd, 1.0f, 0.2f);
  for (const char* norm : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                           "post_feedforward_layernorm", "post_feedforward_layernorm_1",
                           "pre_feedforward_layernorm_2", "post_feedforward_layernorm_2"}) {
    tw.Vector(p + norm + ".weight", kHidden, 1.0f, 0.3f);
  }
  tw.Vector(p + "layer_scalar", 1, 0.8f, 0.1f);
  tw.Linear(p + "mlp.gate_proj", kInter, kHidden, true);
  tw.Linear(p + "mlp.up_proj", kInter, kHidden, true);
  tw.Linear(p + "mlp.down_proj", kHidden, kInter, true);
  tw.Linear(p + "router.proj", kExperts, kHidden, false);
  tw.Vector(p + "router.scale", kHidden, 1.0f, 0.3f);
  tw.Vector(p + "router.per_expert_scale", kExperts, 1.0f, 0.3f);
  for (int e = 0; e < kExperts; ++e) {
    const std::string m = p + "experts." + std::to_string(e) + ".";
    tw.Linear(m + "gate_proj", kMoeInter, kHidden, true);
    tw.Linear(m + "up_proj", kMoeInter, kHidden, true);
    tw.Linear(m + "down_proj", kHidden, kMoeInter, true);
  }
}

}  // namespace

Status WriteDemoModel(const DemoModelOptions& options) {
  namespace fs = std::filesystem;
  const fs::path dir(options.output_dir);
  std::error_code ec;
  if (fs::exists(dir / "config.json") && !options.overwrite) {
    return MakeError(dir.string(), " already holds a model (pass --overwrite to replace it)");
  }
  fs::create_directories(dir, ec);
  if (ec) return MakeError("cannot create ", dir.string(), ": ", ec.message());

  TensorWriter tw(options.seed);
  tw.Bf16("model.embed_tokens.weight", {kVocab, kHidden}, tw.Random(size_t{kVocab} * kHidden, 0.03f));
  tw.Vector("model.norm.weight", kHidden, 1.0f, 0.3f);
  for (int l = 0; l < kLayers; ++l) WriteLayer(tw, l);
  GS_RETURN_IF_ERROR(WriteSafetensors((dir / "model.safetensors").string(), tw.tensors(),
                                      {{"format", "pt"}}));

  const json config = DemoConfig();
  json generation = {{"bos_token_id", 2}, {"pad_token_id", 0}, {"eos_token_id", {1, 106, 50}},
                     {"do_sample", true}, {"temperature", 1.0}, {"top_k", 64}, {"top_p", 0.95}};
  GS_RETURN_IF_ERROR(WriteTextFile((dir / "config.json").string(), config.dump(2) + "\n"));
  GS_RETURN_IF_ERROR(WriteTextFile((dir / "hf_quant_config.json").string(),
                                   ModeloptHfQuantConfig(DemoDeclaration()).dump(2) + "\n"));
  GS_RETURN_IF_ERROR(WriteTextFile((dir / "tokenizer.json").string(), DemoTokenizerJson(kVocab).dump()));
  GS_RETURN_IF_ERROR(WriteTextFile((dir / "tokenizer_config.json").string(), DemoTokenizerConfig().dump(2) + "\n"));
  GS_RETURN_IF_ERROR(WriteTextFile((dir / "chat_template.jinja").string(), Gemma4ChatTemplate()));
  return WriteTextFile((dir / "generation_config.json").string(), generation.dump(2) + "\n");
}

}  // namespace gs
