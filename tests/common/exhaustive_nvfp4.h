// An NVFP4 matrix that holds every code byte under every block-scale byte, for the exactness
// tests of the repack (tests/unit/nvfp4_repack_test.cpp) and of the kernels
// (tests/gpu/nvfp4_gemm_test.cpp): code byte (7j + 3r) mod 256 at byte j of row r, scale byte
// (g + 17r) mod 256 at group g. With 16 rows × 256 groups every scale byte appears 16 times, each
// under a run of code bytes; the two NaN scale bytes (0x7f, 0xff) are replaced by `nan_stand_in`.
#pragma once

#include <cstdint>
#include <vector>

#include "model/quantized_linear.h"
#include "util/numeric_formats.h"

namespace gs::test {

// Fills `codes` and `scales` and returns the [rows, cols] view of them (global scale 1).
inline QuantizedLinear ExhaustiveNvfp4(int64_t rows, int64_t cols, uint8_t nan_stand_in,
                                       std::vector<uint8_t>& codes, std::vector<uint8_t>& scales) {
  codes.resize(static_cast<size_t>(rows * cols / 2));
  scales.resize(static_cast<size_t>(rows * cols / 16));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < cols / 16; ++g) {
      const auto s = static_cast<uint8_t>((g + 17 * r) & 0xff);
      scales[static_cast<size_t>(r * cols / 16 + g)] = E4m3IsNan(s) ? nan_stand_in : s;
    }
    for (int64_t j = 0; j < cols / 2; ++j) {
      codes[static_cast<size_t>(r * cols / 2 + j)] = static_cast<uint8_t>((j * 7 + r * 3) & 0xff);
    }
  }
  QuantizedLinear q;
  q.name = "exhaustive";
  q.format = WeightFormat::kNvfp4;
  q.rows = rows;
  q.cols = cols;
  q.data = codes.data();
  q.block_scale = scales.data();
  q.global_scale = 1.0f;
  return q;
}

}  // namespace gs::test
