// The model's weights in GPU memory, uploaded once: BF16 attention / embedding (the tied lm_head),
// the router widened to fp32, NVFP4 (or BF16) dense MLP and experts in the packed layout of nvfp4_repack.h, fp32
// norm vectors. Built from a loaded checkpoint or, for benchmarks, filled with random values on
// the GPU (`--load-format dummy`).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/kernels.h"

namespace gs::cuda {

// A packed matrix (or bank of experts) and the kernel's view of it.
struct DevicePacked {
  DeviceBuffer codes, scales, global_scales;
  PackedMatrix view;
  int banks = 0;
  int64_t bytes_per_bank = 0;  // codes + scales of one matrix
};

struct DeviceLayer {
  LayerConfig lc;
  int q_rows = 0, k_rows = 0, v_rows = 0;  // v_rows = 0 on k_eq_v layers
  DeviceBuffer qkv, o;                      // bf16; o [hidden (+ 2·experts when folded), q_rows]
  DeviceBuffer router;                      // fp32 [experts, hidden] (widened from bf16)
  // The router folded through the o projection (router_fold.cu): o's rows past `hidden` are the
  // fold's C rows (hi, then lo) and router_h = router ⊙ router_scale · hidden^-½.
  bool router_folded = false;
  DeviceBuffer router_h;
  DeviceBuffer vecs;                        // every fp32 vector of the layer
  const float *input_norm = nullptr, *post_attn = nullptr, *pre_ffn = nullptr;
  const float *post1 = nullptr, *pre_ffn_2 = nullptr, *post2 = nullptr, *post = nullptr;
  const float *q_norm = nullptr, *k_norm = nullptr, *inv_freq = nullptr;
  const float *router_scale = nullptr, *per_expert_scale = nullptr;
  float layer_scalar = 1.0f;
  DevicePacked mlp_gate_up, mlp_down;       // GLU-interleaved gate/up, natural down
  DevicePacked expert_gate_up, expert_down; // banks of num_experts
};

struct DeviceModel {
  DeviceBuffer embed;  // bf16 [vocab, hidden]
  DeviceBuffer final_norm;
  std::vector<DeviceLayer> layers;
  int64_t total_bytes = 0;

  // Weight bytes one forward step reads when `active_experts[l]` experts run in layer l and the
  // lm_head is applied (the whole tied embedding); `folded`: the step ran the folded router.
  int64_t StepWeightBytes(const ModelConfig& config, const std::vector<int>& active_experts,
                          bool folded) const;
};

// A BF16 linear as it is (an error names the tensor when it is not BF16 or not [rows, cols]).
Status UploadBf16Linear(DeviceBuffer& buf, const QuantizedLinear& w, int64_t rows, int64_t cols);

Expected<DeviceModel> UploadModel(const ModelConfig& config, const Gemma4Weights& weights);
Expected<DeviceModel> MakeDummyModel(const ModelConfig& config, uint64_t seed);

}  // namespace gs::cuda
