// The CUDA ModelRunner (DESIGN §4: BF16 activations between ops, fp32 accumulation, fp32 norms,
// softmax and router; fp32 residual stream). Plain C++: no CUDA types here, so the CLI and the
// engine include it without the toolkit's headers. Only built where nvcc exists (GS_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/model_runner.h"
#include "util/status.h"

namespace gs {

struct CudaRunnerOptions {
  int device = 0;
  // Multiplier of the token embeddings; 0 = the bf16 model's bf16(√hidden) (53.0 for 2816).
  float embed_scale = 0.0f;
  // Run every step kernel by kernel (no CUDA graphs for decode steps).
  bool enforce_eager = false;
  // KV cache element type: "bf16" (or "auto") or "fp8" (e4m3 codes with an fp32 scale per
  // position and kv head, amax / 448; half the bytes per token).
  std::string kv_cache_dtype = "bf16";
};

class CudaRunner : public ModelRunner {
 public:
  struct Impl;
  explicit CudaRunner(std::unique_ptr<Impl> impl);
  ~CudaRunner() override;

  const ModelConfig& config() const override;
  const KvCacheSpec& kv_spec() const override;
  Status Forward(const Batch& batch, std::vector<float>* logits) override;
  // Copies slot src's sliding-layer KV rings over slot dst's (the engine's prefix caching).
  bool supports_slot_copy() const override { return true; }
  Status CopySlot(int src, int dst) override;

  // The vision encoder (vision_encoder.h), when the checkpoint has a vision tower (or the dummy
  // model's config a vision_config). EncodeImage runs EncodeImages on one image.
  bool supports_vision() const override;
  Expected<std::vector<float>> EncodeImage(const ProcessedImage& image) override;
  // Every image of a step through the encoder in one pass; soft tokens [n_i, hidden] of each.
  Expected<std::vector<std::vector<float>>> EncodeImages(
      const std::vector<const ProcessedImage*>& images) override;
  // Bytes of vision tower + projector weights on the GPU (0 without vision).
  int64_t vision_weight_bytes() const;
  // Samples on the GPU (cuda/sampling.cu LaunchSample) after the step, which runs as Forward's
  // (a decode bucket's CUDA graph or eagerly); the sampling kernel itself is one eager launch
  // after it. Copies back ids (and logprobs / logits only when asked for).
  Status ForwardSample(const Batch& batch, const std::vector<GpuSamplingParams>& per_row,
                       std::vector<int32_t>* ids, std::vector<float>* logprobs,
                       std::vector<float>* logits) override;
  bool samples_on_device() const override { return true; }

  // Greedy decoding without copying logits: ids[i] = argmax of the (softcapped) logits of
  // batch.logits_indices[i], computed on the GPU.
  Status ForwardGreedy(const Batch& batch, std::vector<int32_t>* ids);

  // Weight bytes the last step read: every dense weight once, the lm_head, and each layer's
  // distinct routed experts (read back from the GPU; synchronizes).
  Expected<int64_t> LastStepWeightBytes();
  // Decode steps (one token per sequence, logits of each in order) replay a CUDA graph per batch
  // bucket (1, 2, 4, … 128) unless eager execution is enforced; switchable between steps.
  void set_enforce_eager(bool eager);
  // Graph replays and captures so far (tests and benchmarks).
  int graph_launches() const;
  int graph_captures() const;
  // Bytes of weights resident on the GPU.
  int64_t weight_bytes() const;
  // "NVIDIA H100 80GB HBM3" etc.
  std::string device_name() const;
  float embed_scale() const;
  // "bf16" or "fp8".
  std::string kv_cache_dtype() const;

 private:
  std::unique_ptr<Impl> impl_;
};

// Uploads `weights` (checked: attention BF16, MLP/experts NVFP4 or BF16 with supported shapes)
// and allocates the KV cache of `spec` on the GPU. With a vision_config, the BF16 vision tower and
// projector are uploaded too when the checkpoint has them (otherwise image input is off, with a
// note on stderr).
Expected<std::unique_ptr<CudaRunner>> CreateCudaRunner(const ModelConfig& config,
                                                       const Gemma4Weights& weights,
                                                       const KvCacheSpec& spec,
                                                       const CudaRunnerOptions& options = {});

// The config's shapes with pseudo-random weights generated on the GPU (no checkpoint): NVFP4 dense
// MLP and experts, BF16 attention, router and embedding, and a random BF16 vision tower when the
// config has a vision_config. For benchmarks.
Expected<std::unique_ptr<CudaRunner>> CreateDummyCudaRunner(const ModelConfig& config,
                                                            const KvCacheSpec& spec,
                                                            const CudaRunnerOptions& options = {},
                                                            uint64_t seed = 1);

// Number of CUDA devices; 0 with `why` set when there is none or the driver is unusable.
int CudaDeviceCount(std::string* why);

// The bandwidth ceiling benchmarks compare against: a device-to-device cudaMemcpy of `bytes`,
// timed with CUDA events after warm-up, median of `reps`; GB/s counting bytes read + written.
Expected<double> MeasureCopyBandwidth(size_t bytes = size_t{1} << 30, int reps = 20);

}  // namespace gs
