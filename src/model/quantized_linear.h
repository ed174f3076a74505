// One linear layer's weights as the kernels see them, whatever checkpoint format they came from
// (DESIGN §3). y = x · Wᵀ with W of shape [rows = N outputs, cols = K inputs].
//
// NVFP4: w[n,k] = e2m1(code[n,k]) × e4m3(block_scale[n, k/16]) × global_scale. The first product
// is exact in bf16/fp32; the global scale is applied to the fp32 dot product afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gs {

enum class WeightFormat { kBf16, kNvfp4 };

const char* WeightFormatName(WeightFormat format);

struct QuantizedLinear {
  std::string name;  // tensor prefix, for messages
  WeightFormat format = WeightFormat::kBf16;
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
  // bf16: [N, K] little-endian bf16; nvfp4: [N, K/2] codes, element 2j in the low nibble of byte j.
  // Points into a memory-mapped checkpoint (or a buffer owned by whoever built this); may be
  // unaligned.
  const uint8_t* data = nullptr;
  const uint8_t* block_scale = nullptr;  // nvfp4: e4m3 [N, K/16]
  float global_scale = 1.0f;             // nvfp4: multiplier (ModelOpt weight_scale_2)
  float input_scale = 0.0f;              // nvfp4: kept for Blackwell W4A4, unused on Hopper/CPU

  bool empty() const { return data == nullptr; }
  // Bytes of weight data read per full pass (codes + block scales, or bf16 values).
  size_t bytes() const;

  // Row n as fp32 WITHOUT the global scale (exact: e2m1 × e4m3, or the bf16 value).
  void DequantizeRowUnscaled(int64_t n, float* out) const;
  // The factor to apply to a dot product with an unscaled row: global_scale, or 1 for bf16.
  float OutputScale() const { return format == WeightFormat::kNvfp4 ? global_scale : 1.0f; }
};

struct ExpertWeights {
  QuantizedLinear gate, up, down;  // gate and up keep their own global scales
};

// All routed experts of one MoE layer, from per-expert NVFP4 tensors or fused BF16 3-D tensors.
struct ExpertBank {
  std::vector<ExpertWeights> experts;
};

}  // namespace gs
