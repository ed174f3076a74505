// The CUDA runner's NVFP4 repack (src/runtime/cuda/nvfp4_repack.h), checked on the CPU: the packed
// bytes are decoded here by a straightforward reader of the documented layout (not the kernel's
// helpers) and must give the checkpoint's dequantised values, for random matrices with negative,
// zero and e4m3-subnormal block scales, plain and GLU-interleaved; the scale and code bit tricks
// the kernel uses are checked against the e4m3 / e2m1 values; NaN scales are rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/exhaustive_nvfp4.h"
#include "runtime/cuda/nvfp4_repack.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

// The float whose bits are the bf16 pattern `bits` (bf16 is the top half of an fp32).
double Bf16Bits(uint32_t bits) {
  const uint32_t f = (bits & 0xffffu) << 16;
  float v;
  std::memcpy(&v, &f, 4);
  return v;
}

// e4m3fn value of a byte, from the format's definition (bias 7, subnormals m·2^-9).
double E4m3Value(uint8_t b) {
  const int e = (b >> 3) & 0xf, m = b & 7;
  const double v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return (b & 0x80) ? -v : v;
}

// e2m1 value of a nibble: bit 3 sign, e1 e0 m (bias 1, subnormal 0.5 for e = 0).
double E2m1Value(uint32_t nibble) {
  const int e = (nibble >> 1) & 3, m = nibble & 1;
  const double v = e == 0 ? 0.5 * m : std::ldexp(1.0 + 0.5 * m, e - 1);
  return (nibble & 8) ? -v : v;
}

TEST(Nvfp4Repack, ScaleCodeGivesTheBf16OfScaleTimes2Pow110) {
  for (int b = 1; b < 0x7f; ++b) {  // every finite positive e4m3
    const uint32_t q = cuda::Nvfp4ScaleCode(static_cast<uint8_t>(b));
    EXPECT_LE(q, 150u) << b;
    EXPECT_EQ(cuda::Nvfp4ScaleCode(static_cast<uint8_t>(b | 0x80)), q) << "sign ignored, " << b;
    const uint32_t bits = (q << 4) + (227u << 7);
    EXPECT_LT(bits, 0x8000u) << "carry into the sign bit, byte " << b;
    EXPECT_EQ(Bf16Bits(bits), std::ldexp(E4m3Value(static_cast<uint8_t>(b)), 110)) << "byte " << b;
    // The device forms both halves at once: (q | q << 16)·16 + 0x71807180.
    const uint32_t pair = (q | q << 16) * 16u + 0x71807180u;
    EXPECT_EQ(pair, bits | bits << 16) << "byte " << b;
  }
}

// The kernel's fragment-register formula (nvfp4_repack.h) maps every code, in every position, to
// the bf16 e2m1·2^-126, low half and high half.
TEST(Nvfp4Repack, CodeFormulaGivesE2m1Times2PowMinus126) {
  for (int i = 0; i < 4; ++i) {
    for (uint32_t lo = 0; lo < 16; ++lo) {
      for (uint32_t hi = 0; hi < 16; ++hi) {
        // The other six nibbles hold junk that must not leak in.
        uint32_t word = 0x9e3779b9u & ~(0xfu << (4 * i)) & ~(0xfu << (16 + 4 * i));
        word |= lo << (4 * i) | hi << (16 + 4 * i);
        const int mag = 6 - 4 * i, sign = 12 - 4 * i;
        const uint32_t a = ((mag >= 0 ? word << mag : word >> -mag) & 0x01C001C0u) |
                           ((sign >= 0 ? word << sign : word >> -sign) & 0x80008000u);
        EXPECT_EQ(Bf16Bits(a) * std::ldexp(1.0, 126), E2m1Value(lo)) << i << " " << lo;
        EXPECT_EQ(Bf16Bits(a >> 16) * std::ldexp(1.0, 126), E2m1Value(hi)) << i << " " << hi;
      }
    }
  }
}

struct OwnedNvfp4 {
  std::vector<uint8_t> codes, scales;
  QuantizedLinear q;
};

// Any code byte; block scales: mostly normal, 1 in 8 each negative, ±0, subnormal.
OwnedNvfp4 RandomNvfp4(int64_t rows, int64_t cols, std::mt19937_64& rng, const char* name) {
  OwnedNvfp4 w;
  w.codes.resize(static_cast<size_t>(rows * cols / 2));
  w.scales.resize(static_cast<size_t>(rows * cols / 16));
  std::uniform_int_distribution<int> byte(0, 255), kind(0, 7), normal(0x08, 0x7e), sub(1, 7);
  for (auto& b : w.codes) b = static_cast<uint8_t>(byte(rng));
  for (auto& s : w.scales) {
    switch (kind(rng)) {
      case 0: s = static_cast<uint8_t>(0x80 | normal(rng)); break;
      case 1: s = byte(rng) & 1 ? 0x80 : 0x00; break;
      case 2: s = static_cast<uint8_t>((byte(rng) & 0x80) | sub(rng)); break;
      default: s = static_cast<uint8_t>(normal(rng));
    }
  }
  w.q.name = name;
  w.q.format = WeightFormat::kNvfp4;
  w.q.rows = rows;
  w.q.cols = cols;
  w.q.data = w.codes.data();
  w.q.block_scale = w.scales.data();
  return w;
}

// Reads a packed [rows, cols] NVFP4 matrix back as values, following nvfp4_repack.h literally:
// every lane, k16 step and fragment register, the code × the packed scale as the kernel forms
// them (bf16 e2m1·2^-126 times bf16 |s|·2^110), rescaled by 2^16. Also checks that every product
// is an exact, normal (or zero) bf16, as the kernel's __hmul2 needs.
std::vector<double> Unpack(const std::vector<uint8_t>& codes, const std::vector<uint8_t>& scales,
                           int64_t rows, int64_t cols) {
  std::vector<double> w(static_cast<size_t>(rows * cols), NAN);
  const int64_t kblocks = cols / 64;
  for (int64_t t = 0; t < rows / 16; ++t) {
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t tk = t * kblocks + kb;
      for (int lane = 0; lane < 32; ++lane) {
        for (int s = 0; s < 4; ++s) {
          const uint8_t* p = &codes[static_cast<size_t>((tk * 32 + lane) * 16 + 4 * s)];
          const uint32_t word = p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
          for (int i = 0; i < 4; ++i) {
            const int64_t row = t * 16 + lane / 4 + 8 * (i % 2);
            const int64_t col = kb * 64 + 16 * s + 2 * (lane % 4) + 8 * (i / 2);
            const size_t scale_at = static_cast<size_t>((tk * 8 + lane / 4) * 8 + 4 * (i % 2) + s);
            const uint32_t q = scales[scale_at];
            const double scale = Bf16Bits((q << 4) + (227u << 7));
            for (int half = 0; half < 2; ++half) {
              const uint32_t nibble = (word >> (16 * half + 4 * i)) & 0xf;
              const double code = std::ldexp(E2m1Value(nibble), -126);
              const double product = code * scale;  // exact in double
              if (product != 0.0) {
                int exp = 0;
                const double frac = std::frexp(std::fabs(product), &exp);
                EXPECT_GE(exp - 1, -126) << "subnormal product at " << row << ", " << col;
                EXPECT_EQ(std::ldexp(frac, 8), std::floor(std::ldexp(frac, 8)))
                    << "product not exact in bf16 at " << row << ", " << col;
              }
              w[static_cast<size_t>(row * cols + col + half)] = std::ldexp(product, 16);
            }
          }
        }
      }
    }
  }
  return w;
}

void ExpectRowsEqual(const std::vector<double>& got, int64_t packed_row, int64_t cols,
                     const QuantizedLinear& src, int64_t src_row) {
  std::vector<float> want(static_cast<size_t>(cols));
  src.DequantizeRowUnscaled(src_row, want.data());
  int bad = 0;
  for (int64_t k = 0; k < cols; ++k) {
    const double g = got[static_cast<size_t>(packed_row * cols + k)];
    if (g != want[static_cast<size_t>(k)] && bad++ < 5) {
      ADD_FAILURE() << src.name << "[" << src_row << ", " << k << "]: unpacked " << g
                    << ", checkpoint " << want[static_cast<size_t>(k)] << " (code byte 0x"
                    << std::hex << int{src.data[src_row * cols / 2 + k / 2]} << ", scale 0x"
                    << int{src.block_scale[src_row * cols / 16 + k / 16]} << std::dec << ")";
    }
  }
}

TEST(Nvfp4Repack, LinearUnpacksToTheCheckpointValues) {
  std::mt19937_64 rng(1);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{16, 64}, {48, 320}, {128, 1024}}) {
    OwnedNvfp4 w = RandomNvfp4(rows, cols, rng, "w");
    std::vector<uint8_t> codes(static_cast<size_t>(rows * cols / 2));
    std::vector<uint8_t> scales(static_cast<size_t>(rows * cols / 16));
    EXPECT_EQ(cuda::PackedCodeBytes(WeightFormat::kNvfp4, rows, cols), rows * cols / 2);
    EXPECT_EQ(cuda::PackedScaleBytes(WeightFormat::kNvfp4, rows, cols), rows * cols / 16);
    ASSERT_TRUE(cuda::PackLinear(w.q, codes.data(), scales.data()).ok());
    const auto got = Unpack(codes, scales, rows, cols);
    for (int64_t n = 0; n < rows; ++n) ExpectRowsEqual(got, n, cols, w.q, n);
  }
}

TEST(Nvfp4Repack, GluInterleavesGateAndUpInEightRowHalves) {
  std::mt19937_64 rng(2);
  for (auto [inter, hidden] : {std::pair<int64_t, int64_t>{8, 64}, {40, 192}, {96, 512}}) {
    OwnedNvfp4 gate = RandomNvfp4(inter, hidden, rng, "gate");
    OwnedNvfp4 up = RandomNvfp4(inter, hidden, rng, "up");
    const int64_t rows = 2 * inter;
    std::vector<uint8_t> codes(static_cast<size_t>(rows * hidden / 2));
    std::vector<uint8_t> scales(static_cast<size_t>(rows * hidden / 16));
    ASSERT_TRUE(cuda::PackGlu(gate.q, up.q, codes.data(), scales.data()).ok());
    const auto got = Unpack(codes, scales, rows, hidden);
    for (int64_t n = 0; n < rows; ++n) {
      const int64_t j = n / 16 * 8 + n % 8;  // tile t: gate rows 8t..8t+7, then up rows 8t..8t+7
      ExpectRowsEqual(got, n, hidden, n % 16 < 8 ? gate.q : up.q, j);
    }
  }
}

// Every code byte under every non-NaN scale byte (so every sign, zero and subnormal case).
TEST(Nvfp4Repack, EveryCodeUnderEveryScale) {
  const int64_t rows = 16, cols = 4096;
  OwnedNvfp4 w;
  w.q = test::ExhaustiveNvfp4(rows, cols, /*nan_stand_in=*/0x80, w.codes, w.scales);
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols / 2)), scales(w.scales.size());
  ASSERT_TRUE(cuda::PackLinear(w.q, codes.data(), scales.data()).ok());
  const auto got = Unpack(codes, scales, rows, cols);
  for (int64_t n = 0; n < rows; ++n) ExpectRowsEqual(got, n, cols, w.q, n);
}

TEST(Nvfp4Repack, NanScaleIsRejectedNamingTensorRowAndGroup) {
  std::mt19937_64 rng(3);
  for (uint8_t nan : {uint8_t{0x7f}, uint8_t{0xff}}) {
    OwnedNvfp4 gate = RandomNvfp4(16, 128, rng, "layers.0.mlp.gate_proj");
    OwnedNvfp4 up = RandomNvfp4(16, 128, rng, "layers.0.mlp.up_proj");
    up.scales[5 * 8 + 6] = nan;  // row 5, group 6
    std::vector<uint8_t> codes(32 * 128 / 2), scales(32 * 128 / 16);
    ASSERT_TRUE(cuda::PackLinear(gate.q, codes.data(), scales.data()).ok());
    const Status linear = cuda::PackLinear(up.q, codes.data(), scales.data());
    ASSERT_FALSE(linear.ok());
    const Status glu = cuda::PackGlu(gate.q, up.q, codes.data(), scales.data());
    ASSERT_FALSE(glu.ok());
    for (const Status* st : {&linear, &glu}) {
      const std::string msg = st->error().message;
      EXPECT_NE(msg.find("layers.0.mlp.up_proj"), std::string::npos) << msg;
      EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
      EXPECT_NE(msg.find("row 5,"), std::string::npos) << msg;
      EXPECT_NE(msg.find("group 6 "), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace gs
