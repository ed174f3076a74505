#include "runtime/cpu/bf16_rounding.h"

#include "util/numeric_formats.h"

namespace gs::cpu {

const char* Bf16PointName(uint32_t point) {
  switch (point) {
    case kBf16QkvInput: return "qkv_in";
    case kBf16Q: return "q";
    case kBf16K: return "k";
    case kBf16V: return "v";
    case kBf16AttnOutput: return "o_in";
    case kBf16DenseInput: return "dense_in";
    case kBf16ExpertInput: return "expert_in";
    case kBf16DenseGlu: return "dense_glu";
    case kBf16ExpertGlu: return "expert_glu";
    case kBf16LmHeadInput: return "lm_head_in";
    default: return "?";
  }
}

std::string Bf16PointsName(uint32_t points) {
  if (points == 0) return "none";
  if (points == kAllBf16Points) return "all";
  std::string out;
  for (int i = 0; i < kNumBf16Points; ++i) {
    if ((points & (1u << i)) == 0) continue;
    if (!out.empty()) out += '+';
    out += Bf16PointName(1u << i);
  }
  return out;
}

void RoundInPlace(float* x, size_t n, Bf16Mode mode) {
  if (mode == Bf16Mode::kNone) return;
  const bool pair = mode == Bf16Mode::kPair;
  for (size_t i = 0; i < n; ++i) {
    const float hi = RoundToBf16(x[i]);
    x[i] = pair ? hi + RoundToBf16(x[i] - hi) : hi;
  }
}

}  // namespace gs::cpu
