// Host conversions for the number formats found in Gemma 4 checkpoints: bfloat16, float16,
// FP8 E4M3 ("fn": no infinities, 0x7F/0xFF are NaN) and FP4 E2M1 (NVFP4 element codes).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gs {

inline float Bf16ToFloat(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float RoundToBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

// E4M3fn: bias 7, subnormals 2^-6 * m/8, max 448, S.1111.111 is NaN.
inline float E4m3ToFloat(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 0xf, mant = b & 0x7;
  float v;
  if (exp == 0xf && mant == 0x7) {
    v = NAN;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -9);
  } else {
    v = std::ldexp(static_cast<float>(8 + mant), exp - 10);
  }
  return sign ? -v : v;
}

inline bool E4m3IsNan(uint8_t b) { return (b & 0x7f) == 0x7f; }

// Nearest E4M3fn value (ties to even), saturating at ±448, as torch's float8_e4m3fn cast does for
// in-range inputs. Used by the quantizer and the tests.
uint8_t FloatToE4m3(float f);

// E2M1 magnitudes for codes 0..7; bit 3 is the sign.
inline constexpr float kE2m1Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                          -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

inline float E2m1ToFloat(uint8_t code) { return kE2m1Values[code & 0xf]; }

// Nearest E2M1 code for x (ties to even code), clamped to ±6.
uint8_t FloatToE2m1(float x);

}  // namespace gs
