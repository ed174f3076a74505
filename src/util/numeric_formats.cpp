#include "util/numeric_formats.h"

namespace gs {

uint8_t FloatToE4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Below the smallest normal (2^-6) the grid is uniform with step 2^-9; nearbyint rounds ties
  // to even. A result of 8 steps is exactly the smallest normal, code 0x08, so no special case.
  if (a < 0.015625f) return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const int exp = e - 1;                                        // a in [2^exp, 2^(exp+1))
  int q = static_cast<int>(std::nearbyint(std::ldexp(a, 3 - exp)));  // 8..16 eighths
  int biased = exp + 7;
  if (q == 16) {
    q = 8;
    ++biased;
  }
  const uint8_t code = static_cast<uint8_t>((biased << 3) | (q - 8));
  return sign | (code > 0x7e ? 0x7e : code);
}

uint8_t FloatToE2m1(float x) {
  const uint8_t sign = x < 0.0f ? 0x8 : 0x0;  // -0.0 encodes as +0, as torch's x < 0 test does
  const float a = std::fabs(x);
  // Midpoints between neighbours; ties go to the even code (as torch.bucketize-based rounding
  // in the ModelOpt/compressed-tensors recipes effectively does for these boundaries).
  uint8_t code;
  if (a <= 0.25f) code = 0;
  else if (a < 0.75f) code = 1;
  else if (a <= 1.25f) code = 2;
  else if (a < 1.75f) code = 3;
  else if (a <= 2.5f) code = 4;
  else if (a < 3.5f) code = 5;
  else if (a <= 5.0f) code = 6;
  else code = 7;
  return sign | code;
}

}  // namespace gs
