// The FP8 KV cache layout (src/runtime/cuda/fp8_kv_layout.h) against float64 references: the
// e4m3 → bf16 · 2^-120 bit move for every code at every position of a cache word, the byte order,
// the row scales and their clamps, a host quantize → expand → scale round trip, and the P · S
// bf16 hi + lo split the attention kernels rely on.
#include "runtime/cuda/fp8_kv_layout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "util/numeric_formats.h"

namespace gs {
namespace {

// E4M3fn from its definition (OCP FP8): bias 7, subnormals m/8 · 2^-6; NaN codes excluded.
double RefE4m3(int b) {
  const int e = (b >> 3) & 0xf, m = b & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (b & 0x80) ? -mag : mag;
}

bool IsNanCode(int b) { return (b & 0x7f) == 0x7f; }

// bf16 bits → value in float64 (bf16 values, subnormals included, are exact in float).
double Bf16(uint32_t bits) { return Bf16ToFloat(static_cast<uint16_t>(bits)); }

// Word [b0 b1 b2 b3], byte 0 least significant (the cache bytes read as a little-endian uint32).
uint32_t Word(int b0, int b1, int b2, int b3) {
  const uint8_t bytes[4] = {static_cast<uint8_t>(b0), static_cast<uint8_t>(b1),
                            static_cast<uint8_t>(b2), static_cast<uint8_t>(b3)};
  uint32_t w;
  std::memcpy(&w, bytes, 4);
  return w;
}

TEST(Fp8KvLayout, EveryCodeExpandsToItsValueTimes2PowMinus120AtEveryWordPosition) {
  std::mt19937 rng(7);
  int checked = 0;
  for (int b = 0; b < 256; ++b) {
    if (IsNanCode(b)) continue;
    const double want = std::ldexp(RefE4m3(b), -120);
    // The single-byte rule itself.
    EXPECT_EQ(Bf16(((b & 0x7fu) << 4) | ((b & 0x80u) << 8)), want) << "code " << b;
    // Each of the 4 positions of a word, the other 3 bytes random codes (no bleeding between
    // neighbours). Word [v0 v2 v1 v3]: Bytes02 gives (v0, v1), Bytes13 gives (v2, v3).
    for (int trial = 0; trial < 16; ++trial) {
      int o[4];
      for (int& x : o) x = static_cast<int>(rng() % 256);
      for (int& x : o) x = IsNanCode(x) ? 0 : x;
      for (int pos = 0; pos < 4; ++pos) {
        int bytes[4] = {o[0], o[1], o[2], o[3]};
        bytes[pos] = b;
        const uint32_t w = Word(bytes[0], bytes[1], bytes[2], bytes[3]);
        const uint32_t even = fp8kv::Bytes02ToScaledBf16x2(w);
        const uint32_t odd = fp8kv::Bytes13ToScaledBf16x2(w);
        const double v0 = Bf16(even & 0xffff), v1 = Bf16(even >> 16);
        const double v2 = Bf16(odd & 0xffff), v3 = Bf16(odd >> 16);
        EXPECT_EQ(v0, std::ldexp(RefE4m3(bytes[0]), -120)) << b << " at " << pos;
        EXPECT_EQ(v2, std::ldexp(RefE4m3(bytes[1]), -120)) << b << " at " << pos;
        EXPECT_EQ(v1, std::ldexp(RefE4m3(bytes[2]), -120)) << b << " at " << pos;
        EXPECT_EQ(v3, std::ldexp(RefE4m3(bytes[3]), -120)) << b << " at " << pos;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 254 * 16 * 4);
  // The smallest subnormal code really is a bf16 subnormal (2^-129) and the largest normal 448.
  EXPECT_EQ(Bf16(fp8kv::Bytes02ToScaledBf16x2(Word(0x01, 0, 0, 0)) & 0xffff),
            std::ldexp(1.0, -129));
  EXPECT_EQ(Bf16(fp8kv::Bytes13ToScaledBf16x2(Word(0, 0, 0, 0xfe)) >> 16),
            -448 * std::ldexp(1.0, -120));
}

TEST(Fp8KvLayout, ByteOrderSwapsTheMiddleValuesOfEachFour) {
  // [v0 v2 v1 v3 | v4 v6 v5 v7]: the byte that holds value i.
  const int want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int group = 0; group < 64; ++group) {
    for (int i = 0; i < 8; ++i) EXPECT_EQ(fp8kv::ByteIndex(group * 8 + i), group * 8 + want[i]);
  }
}

TEST(Fp8KvLayout, RowScalesAndTheirClamps) {
  EXPECT_EQ(fp8kv::RowScale(448.0f), 1.0f);
  EXPECT_EQ(fp8kv::RowScale(3.5f), 3.5f / 448.0f);
  EXPECT_EQ(fp8kv::RowScale(0.0f), 1.0f);                       // all-zero row
  EXPECT_EQ(fp8kv::RowScale(57344.0f), 128.0f);                 // 448 · 2^7: the top
  EXPECT_EQ(fp8kv::RowScale(1e30f), 128.0f);                    // larger rows saturate
  EXPECT_EQ(fp8kv::RowScale(1e-40f), std::ldexp(1.0f, -126));  // keeps 1/s finite
  for (float amax : {0.0f, 1e-40f, 1e-30f, 1e-3f, 1.0f, 448.0f, 5e4f, 1e30f,
                     std::numeric_limits<float>::max()}) {
    const float s = fp8kv::RowScale(amax), stored = fp8kv::StoredScale(s);
    EXPECT_TRUE(std::isfinite(stored)) << amax;
    EXPECT_TRUE(std::isfinite(1.0f / s)) << amax;
    EXPECT_GE(stored, std::ldexp(1.0f, -6)) << amax;
    EXPECT_LE(stored, std::ldexp(1.0f, 127)) << amax;
    EXPECT_EQ(static_cast<double>(stored), std::ldexp(static_cast<double>(s), 120)) << amax;
    EXPECT_EQ(fp8kv::RealScale(stored), s) << amax;
  }
}

// Quantize a row on the host as the writers do, expand every word as the tile loader does, apply
// the stored scale as the kernels do: the result is e4m3(x / s) · s of the unpermuted element,
// computed independently, and within e4m3's rounding of x.
void ExpectRoundTrip(const std::vector<float>& x, const char* what) {
  const int d = static_cast<int>(x.size());
  std::vector<uint8_t> codes(x.size());
  const float stored = fp8kv::QuantizeRowHost(x.data(), d, codes.data());
  double amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  const double s = std::min(std::max(amax / 448.0, std::ldexp(1.0, -126)), 128.0);
  const double s_ref = amax > 0 ? s : 1.0;
  EXPECT_NEAR(std::ldexp(static_cast<double>(stored), -120), s_ref, 1e-6 * s_ref) << what;
  int bad = 0, bad_bound = 0;
  for (int c = 0; c < d; c += 4) {
    uint32_t w;
    std::memcpy(&w, codes.data() + c, 4);
    const uint32_t even = fp8kv::Bytes02ToScaledBf16x2(w), odd = fp8kv::Bytes13ToScaledBf16x2(w);
    const double got[4] = {Bf16(even & 0xffff), Bf16(even >> 16), Bf16(odd & 0xffff),
                           Bf16(odd >> 16)};
    for (int j = 0; j < 4; ++j) {
      const int i = c + j;
      const double value = got[j] * stored;  // in real units
      const float inv = 1.0f / fp8kv::RealScale(stored);
      const double want = RefE4m3(FloatToE4m3(x[i] * inv)) * fp8kv::RealScale(stored);
      // DequantizeHost rounds the same exact product once to float.
      bad += value != want ||
             static_cast<float>(value) != fp8kv::DequantizeHost(codes.data(), stored, i);
      // e4m3 rounding of x / s, or saturation at ±448 · s for rows past 57344.
      const double sat = 448.0 * fp8kv::RealScale(stored);
      const double clipped = std::max(-sat, std::min(sat, static_cast<double>(x[i])));
      bad_bound += !(std::fabs(value - clipped) <=
                     std::fabs(clipped) / 16 * 1.001 + std::ldexp(fp8kv::RealScale(stored), -10));
    }
  }
  EXPECT_EQ(bad, 0) << what << ": expanded values differ from the unpermuted e4m3 · s";
  EXPECT_EQ(bad_bound, 0) << what << ": values outside e4m3 rounding of the input";
}

TEST(Fp8KvLayout, HostQuantizeExpandScaleRoundTrip) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int d : {8, 64, 256, 512}) {
    for (double magnitude : {1.0, 1e-3, 1e-37, 1e3, 1e5}) {
      std::vector<float> x(static_cast<size_t>(d));
      for (float& v : x) v = RoundToBf16(static_cast<float>(normal(rng) * magnitude));
      ExpectRoundTrip(x, "random row");
    }
  }
  // Every code at once (subnormals included): x = e4m3(b) / 4, so amax = 112, s = 1/4 and x / s
  // is each code's value exactly.
  std::vector<float> all;
  for (int b = 0; b < 256; ++b) {
    if (!IsNanCode(b)) all.push_back(static_cast<float>(RefE4m3(b) * 0.25));
  }
  all.resize(256, 0.0f);
  ExpectRoundTrip(all, "every code");
  ExpectRoundTrip(std::vector<float>(64, 0.0f), "zero row");
  std::vector<float> huge(64, 1e5f);
  huge[3] = -7e4f;
  ExpectRoundTrip(huge, "row past 57344");
}

// The kernels multiply probabilities p ∈ [0, 1] by the value scale S ≤ 2^127 and split the
// product into hi = bf16(x), lo = bf16(x − hi) (attention_common.cuh SplitBf16x2): hi stays
// finite and hi + lo keeps x to 2^-16 relative.
TEST(Fp8KvLayout, ScaledProbabilitiesSplitIntoTwoFiniteBf16) {
  const float max_stored = fp8kv::StoredScale(fp8kv::RowScale(1e30f));
  EXPECT_EQ(max_stored, std::ldexp(1.0f, 127));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int i = 0; i < 10000; ++i) {
    const float p = i == 0 ? 1.0f : i == 1 ? std::nextafter(1.0f, 0.0f) : unit(rng);
    const float stored =
        i < 5000 ? max_stored : fp8kv::StoredScale(fp8kv::RowScale(unit(rng) * 10));
    const float x = p * stored;
    ASSERT_TRUE(std::isfinite(x));
    const float hi = RoundToBf16(x), lo = RoundToBf16(x - hi);
    ASSERT_TRUE(std::isfinite(hi)) << x;
    ASSERT_LE(std::fabs(static_cast<double>(hi) + lo - x), std::ldexp(std::fabs(x), -16)) << x;
  }
}

}  // namespace
}  // namespace gs
