// The ModelOpt NVFP4 weight recipe (reference nvfp4 §2.2), for make-demo-model and `quantize`:
//   global  = amax(W) / (6 · 448)                       (weight_scale_2, a multiplier)
//   scale_b = e4m3(amax(W[n, 16b : 16b+16]) / (6 · global)), an all-zero block gets 1.0
//   code    = nearest e2m1(W / (scale_b · global)), ties to the even code
#pragma once

#include <cstdint>
#include <vector>

namespace gs {

struct Nvfp4Weights {
  std::vector<uint8_t> codes;   // [rows, cols/2], element 2j in the low nibble of byte j
  std::vector<uint8_t> scales;  // e4m3 [rows, cols/16]
  float global_scale = 1.0f;
};

// cols must be a multiple of 16.
Nvfp4Weights QuantizeNvfp4(const float* w, int64_t rows, int64_t cols);

}  // namespace gs
