#include "model/nvfp4_quantize.h"

#include <algorithm>
#include <cmath>

#include "util/numeric_formats.h"

namespace gs {

Nvfp4Weights QuantizeNvfp4(const float* w, int64_t rows, int64_t cols) {
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  float amax = 0.0f;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
  Nvfp4Weights q;
  q.global_scale = amax > 0.0f ? amax / (6.0f * 448.0f) : 1.0f;
  q.codes.assign(n / 2, 0);
  q.scales.assign(n / 16, 0);
  for (size_t b = 0; b < n / 16; ++b) {
    const float* blk = w + b * 16;
    float bmax = 0.0f;
    for (int i = 0; i < 16; ++i) bmax = std::max(bmax, std::fabs(blk[i]));
    // An all-zero block gets scale 1.0 (ModelOpt); one whose scale underflows e4m3 too, so that
    // its codes round to 0 instead of dividing by zero.
    uint8_t scale = FloatToE4m3(bmax == 0.0f ? 1.0f : bmax / (6.0f * q.global_scale));
    if (E4m3ToFloat(scale) == 0.0f) scale = FloatToE4m3(1.0f);
    q.scales[b] = scale;
    const float denom = E4m3ToFloat(scale) * q.global_scale;
    for (int i = 0; i < 16; i += 2) {
      const uint8_t lo = FloatToE2m1(blk[i] / denom), hi = FloatToE2m1(blk[i + 1] / denom);
      q.codes[b * 8 + static_cast<size_t>(i / 2)] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
  return q;
}

}  // namespace gs
