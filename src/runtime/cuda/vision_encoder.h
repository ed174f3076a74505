// The Gemma 4 vision encoder on the GPU (reference gemma4 §4; the same math as
// runtime/cpu/cpu_vision.cpp, which matches transformers): patch embedding with separate x / y
// position tables, bidirectional encoder layers with 2-D RoPE, 3×3 position pooling, × √hidden,
// fp32 standardisation, the weight-free norm and the projector into the text hidden size.
//
// Precision (DESIGN §4 as for the text model): linear layers on the tensor cores through
// cuBLASLt with bf16 inputs and fp32 outputs; norms, RoPE, softmax, pooling and standardisation
// in fp32; the residual stream fp32; GEMM inputs and attention q/k/v bf16. No fp16 anywhere.
//
// Batching: Encode() runs every image it is given in one pass — the patches of all images are
// rows of the same GEMMs, and the attention kernel keeps each image to itself.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/vision_weights.h"
#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/device_memory.h"
#include "util/status.h"
#include "vision/image_processor.h"

namespace gs::cuda {

struct DeviceVisionLayer {
  DeviceBuffer qkv, o, gate_up, down;  // bf16: [3·heads·d, H], [H, heads·d], [2·I, H], [H, I]
  DeviceBuffer vecs;                   // fp32: 4 norms [H], q_norm, k_norm [d]
  const float *input_norm = nullptr, *post_attn = nullptr, *pre_ffn = nullptr;
  const float *post_ffn = nullptr, *q_norm = nullptr, *k_norm = nullptr;
};

class VisionEncoder {
 public:
  // Uploads `weights` (BF16 linears, checked against the config's shapes).
  static Expected<std::unique_ptr<VisionEncoder>> Upload(const ModelConfig& config,
                                                         const VisionWeights& weights);
  // The config's vision shapes with pseudo-random weights made on the GPU (`--load-format dummy`).
  static Expected<std::unique_ptr<VisionEncoder>> Random(const ModelConfig& config, uint64_t seed);

  ~VisionEncoder();
  VisionEncoder(const VisionEncoder&) = delete;
  VisionEncoder& operator=(const VisionEncoder&) = delete;

  // Soft-token embeddings of each image, [num_soft_tokens, text hidden] fp32, in input order.
  Expected<std::vector<std::vector<float>>> Encode(const std::vector<const ProcessedImage*>& images);

  int64_t weight_bytes() const { return weight_bytes_; }
  // Tests: fills every scratch buffer of the last pass with 0xFF bytes (NaN), so a kernel that
  // leaves part of its output unwritten shows in the next pass's result.
  Status PoisonScratch();

 private:
  explicit VisionEncoder(const ModelConfig& config);
  Status Init();
  Status FinishUpload(const std::vector<float>& std_bias, const std::vector<float>& std_scale);
  void CountBytes();
  Status Prepare(const std::vector<const ProcessedImage*>& images);
  Status EnsureScratch();
  Status Run();
  Status Layer(int l);

  ModelConfig config_;
  VisionConfig vc_;
  int padded_dim_ = 0;
  cudaStream_t stream_ = nullptr;
  Bf16Gemm gemm_;
  DeviceBuffer patch_proj_, positions_, globals_, projector_;  // globals: inv_freq, std_*
  const float *inv_freq_ = nullptr, *std_bias_ = nullptr, *std_scale_ = nullptr;
  std::vector<DeviceVisionLayer> layers_;
  int64_t weight_bytes_ = 0;

  // This pass: N patches, S soft tokens, T attention tiles.
  int patches_ = 0, soft_ = 0, tiles_ = 0;
  std::vector<int> soft_first_;  // first soft row of each image, plus the end
  DeviceBuffer meta_;            // ints: pos_x [N], pos_y [N], tiles [4T], slot offsets, patches
  const int *pos_x_ = nullptr, *pos_y_ = nullptr, *tile_info_ = nullptr;
  const int *slot_offsets_ = nullptr, *slot_patches_ = nullptr;
  DeviceBuffer pixels_, x_pix_, h_, x_, qkv_, q_, k_, v_, attn_, a_, gate_up_, inter_;
  DeviceBuffer pooled_, soft_out_;
};

}  // namespace gs::cuda
