// The CPU ModelRunner: the Gemma 4 text forward in fp32, NVFP4 dequantized on the fly. It is the
// numerical reference for the CUDA runner (DESIGN §4).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "model/vision_weights.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_kv_cache.h"
#include "runtime/model_runner.h"
#include "util/thread_pool.h"

namespace gs {

struct CpuRunnerOptions {
  int num_threads = 0;  // 0 = all cores
  // Multiplier of the token embeddings. 0 = the real bf16 model's bf16(√hidden) (53.0 for 2816);
  // tests set the exact fp32 √hidden to show what the rounding changes.
  float embed_scale = 0.0f;
  // Diagnostics (docs/golden-precision.md): round activations to bf16 at these cpu::Bf16Point
  // points, where the CUDA runner does; 0 keeps the fp32 reference path, bit for bit.
  uint32_t bf16_round_points = 0;
  // Points rounded to a hi + lo pair of bf16 terms instead (whether or not also in the above).
  uint32_t bf16_pair_points = 0;
  // Diagnostics: sees each MoE layer's router logits [tokens, experts] and top-k selection
  // [tokens, k] of a forward step, and may replace the selection (its weights then come from
  // the same logits).
  std::function<void(int layer, const std::vector<float>& logits, std::vector<int>* experts)>
      routing_hook = nullptr;
};

class CpuRunner : public ModelRunner {
 public:
  CpuRunner(ModelConfig config, Gemma4Weights weights, KvCacheSpec spec,
            CpuRunnerOptions options = {});

  const ModelConfig& config() const override { return config_; }
  const KvCacheSpec& kv_spec() const override { return spec_; }
  Status Forward(const Batch& batch, std::vector<float>* logits) override;
  bool supports_slot_copy() const override { return true; }
  Status CopySlot(int src, int dst) override;
  Expected<std::vector<float>> EncodeImage(const ProcessedImage& image) override;
  bool supports_vision() const override { return vision_.has_value(); }

  // Enables image input (config.vision must be present).
  Status AttachVision(VisionWeights vision);
  bool has_vision() const { return vision_.has_value(); }

  float embed_scale() const { return embed_scale_; }

 private:
  Status CheckBatch(const Batch& batch) const;
  void Round(uint32_t point, float* x, size_t n) const;
  void Embed(const Batch& batch, float* h) const;
  void RunLayer(int layer, const Batch& batch, float* h);
  void Attention(int layer, const Batch& batch, const float* x, float* out);
  void Feedforward(int layer, int tokens, float* h1, float* ffn_out);
  void Logits(const Batch& batch, float* h, std::vector<float>* logits);

  ModelConfig config_;
  Gemma4Weights weights_;
  KvCacheSpec spec_;
  float embed_scale_;
  CpuRunnerOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  cpu::KvCache cache_;
  std::vector<std::vector<float>> inv_freq_;  // per layer
  std::optional<VisionWeights> vision_;
};

}  // namespace gs
