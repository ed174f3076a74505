// NVFP4 building blocks against float64 references: every E2M1 code times every finite E4M3
// scale byte times a few global scales, and the format conversions' round trips.
#include "util/numeric_formats.h"

#include <gtest/gtest.h>

#include <cmath>

namespace gs {
namespace {

// Independent float64 decode of E4M3fn from its bit fields.
double RefE4m3(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double mag = e == 0 ? m * std::pow(2.0, -9) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

double RefE2m1(uint8_t c) {
  const int s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
  const double mag = e == 0 ? m * 0.5 : (1.0 + m / 2.0) * std::pow(2.0, e - 1);
  return s ? -mag : mag;
}

TEST(NumericFormats, E4m3DecodeMatchesReferenceForEveryByte) {
  for (int b = 0; b < 256; ++b) {
    if (E4m3IsNan(static_cast<uint8_t>(b))) {
      EXPECT_TRUE(std::isnan(E4m3ToFloat(static_cast<uint8_t>(b)))) << b;
      continue;
    }
    EXPECT_EQ(static_cast<double>(E4m3ToFloat(static_cast<uint8_t>(b))), RefE4m3(b)) << b;
  }
  EXPECT_EQ(E4m3ToFloat(0x7e), 448.0f);
}

TEST(NumericFormats, Nvfp4DequantIsExactForEveryNibbleAndScale) {
  const float globals[] = {1.0f, 1.0f / 2688.0f, 3.7e-5f, 0.0123f, 17.5f};
  int checked = 0;
  for (int code = 0; code < 16; ++code) {
    for (int b = 0; b < 256; ++b) {
      if (E4m3IsNan(static_cast<uint8_t>(b))) continue;
      // e2m1 x e4m3 has at most 6 significant bits: exact in bf16 and in float.
      const float block =
          E2m1ToFloat(static_cast<uint8_t>(code)) * E4m3ToFloat(static_cast<uint8_t>(b));
      const double ref_block = RefE2m1(code) * RefE4m3(b);
      ASSERT_EQ(static_cast<double>(block), ref_block);
      ASSERT_EQ(RoundToBf16(block), block) << "not exact in bf16: code " << code << " scale " << b;
      for (float g : globals) {
        const double ref = ref_block * static_cast<double>(g);
        const double got = static_cast<double>(block * g);
        ASSERT_LE(std::fabs(got - ref), std::fabs(ref) * 6e-8) << code << " " << b << " " << g;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 16 * 254 * 5);
}

TEST(NumericFormats, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(RoundToBf16(std::sqrt(2816.0f)), 53.0f);  // the Gemma 4 embedding scale
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa wins.
  EXPECT_EQ(RoundToBf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(RoundToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
}

TEST(NumericFormats, E4m3AndE2m1EncodeRoundTrip) {
  for (int b = 0; b < 256; ++b) {
    if (E4m3IsNan(static_cast<uint8_t>(b)) || b == 0x80) continue;
    EXPECT_EQ(FloatToE4m3(E4m3ToFloat(static_cast<uint8_t>(b))), b) << b;
  }
  EXPECT_EQ(FloatToE4m3(1000.0f), 0x7e);
  // Every value between two neighbours rounds to the nearer one, ties to the even code.
  for (int b = 0; b < 0x7e; ++b) {
    const double lo = RefE4m3(b), hi = RefE4m3(b + 1), mid = (lo + hi) / 2;
    const uint8_t even = (b % 2 == 0) ? b : b + 1;
    EXPECT_EQ(FloatToE4m3(static_cast<float>(mid)), even) << b;
    EXPECT_EQ(FloatToE4m3(static_cast<float>(lo + (hi - lo) * 0.3)), b) << b;
    EXPECT_EQ(FloatToE4m3(static_cast<float>(lo + (hi - lo) * 0.7)), b + 1) << b;
  }
  for (int c = 0; c < 16; ++c) {
    if (c == 8) continue;
    EXPECT_EQ(FloatToE2m1(E2m1ToFloat(static_cast<uint8_t>(c))), c);
  }
  EXPECT_EQ(FloatToE2m1(0.25f), 0);   // tie -> even code 0
  EXPECT_EQ(FloatToE2m1(0.75f), 2);   // tie -> even code 2 (1.0)
  EXPECT_EQ(FloatToE2m1(2.5f), 4);    // tie -> even code 4 (2.0)
  EXPECT_EQ(FloatToE2m1(-7.0f), 15);  // clamp
}

}  // namespace
}  // namespace gs
