#include "model/quantized_linear.h"

#include <cstring>

#include "util/numeric_formats.h"

namespace gs {

const char* WeightFormatName(WeightFormat format) {
  return format == WeightFormat::kBf16 ? "bf16" : "nvfp4";
}

size_t QuantizedLinear::bytes() const {
  const auto n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  return format == WeightFormat::kBf16 ? n * k * 2 : n * k / 2 + n * k / 16;
}

void QuantizedLinear::DequantizeRowUnscaled(int64_t n, float* out) const {
  const auto k = static_cast<size_t>(cols);
  if (format == WeightFormat::kBf16) {
    const uint8_t* row = data + static_cast<size_t>(n) * k * 2;
    for (size_t i = 0; i < k; ++i) {
      uint16_t bits;
      std::memcpy(&bits, row + 2 * i, 2);
      out[i] = Bf16ToFloat(bits);
    }
    return;
  }
  const uint8_t* codes = data + static_cast<size_t>(n) * (k / 2);
  const uint8_t* scales = block_scale + static_cast<size_t>(n) * (k / 16);
  for (size_t b = 0; b < k / 16; ++b) {
    const float s = E4m3ToFloat(scales[b]);
    for (size_t j = 0; j < 8; ++j) {
      const uint8_t byte = codes[b * 8 + j];
      out[b * 16 + 2 * j] = E2m1ToFloat(byte & 0xf) * s;
      out[b * 16 + 2 * j + 1] = E2m1ToFloat(byte >> 4) * s;
    }
  }
}

}  // namespace gs
