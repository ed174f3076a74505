// The FP8 (E4M3) KV cache layout: how a K or V row's values become cache bytes and a scale, and
// how the attention tile loader turns them back into bf16 with a few integer instructions.
// Plain C++ (no CUDA headers) so the host code that builds or reads such a cache — the tests —
// uses the very same definitions as the kernels (kv_store.cuh writes, attention_common.cuh reads).
//
// Values. An e4m3 byte b (sign bit 7, exponent bits 6..3 with bias 7, mantissa bits 2..0) becomes
// a bf16 (sign bit 15, exponent bits 14..7 with bias 127, mantissa bits 6..0) by moving its
// exponent and mantissa up 4 bits and its sign up 8:
//   bf16 bits = ((b & 0x7f) << 4) | ((b & 0x80) << 8),   value = e4m3(b) · 2^-120
// exactly: a normal code's exponent field e is read with bias 127 instead of 7 (2^(e-127) =
// 2^(e-7) · 2^-120) and its 3 mantissa bits land on bf16's top 3; a subnormal code (e = 0) stays
// subnormal in bf16, m/8 · 2^-6 read as m/8 · 2^-126. (0x7f/0xff, e4m3's NaN, become finite
// values; the writers never produce them: they saturate.)
//
// Byte order. Within each 8-byte group of a row (values v0..v7 of 8 consecutive head dims) the
// cache stores [v0 v2 v1 v3 | v4 v6 v5 v7]: element i sits at byte i with bits 0 and 1 swapped.
// A little-endian 32-bit word A = [v0 v2 v1 v3] then holds v0, v1 in bytes 0 and 2 and v2, v3 in
// bytes 1 and 3, so each bf16 pair is one shift-and-mask of A away (each 16-bit half of the
// result takes its byte from the same position in the half):
//   (v0, v1) = ((A << 4) & 0x07F007F0) | ((A << 8) & 0x80008000)
//   (v2, v3) = ((A >> 4) & 0x07F007F0) | ( A       & 0x80008000)
// 3 shifts and 4 and-or (LOP3) per 4 values, ≈ 3.5 integer instructions per pair, instead of
// e4m3x2 → f16x2 → 2 × f32 → bf16x2. (One LOP3 cannot apply two different masks to two
// shifted copies, so each pair needs two logic ops besides its shifts.)
//
// Scales. Each (token, kv head) row of K and of V has a real dequant scale s (value = e4m3 · s):
// s = amax / 448, so the row's largest element maps to e4m3's largest finite value, clamped to
// [2^-126, 2^7] (1 for an all-zero row, whose codes are all zero). The cache stores S = s · 2^120,
// which absorbs the expansion's 2^-120: the kernels multiply scores by the key's S and
// probabilities by the value's S, so cached keys and values come out in real units. S lies in
// [2^-6, 2^127]: finite, and P · S ≤ 2^127 (P ≤ 1 after the running max) is below bf16's largest
// value (≈ 2^128), so P's hi + lo bf16 split stays exact. The clamp at 2^7 means a row with
// |x| > 448 · 2^7 = 57344 saturates at ±57344; the one at 2^-126 keeps 1/s finite (rows with
// amax < 448 · 2^-126 ≈ 5e-36 then use less of e4m3's range). Fresh bf16 keys of a chunk keep
// S = 1: they are not expanded.
//
// Scaled scores: a cached key contributes q · e4m3 · 2^-120 to the mma's fp32 sum before the
// multiplication by S. A product below fp32's smallest normal (2^-126) needs |q_i · e4m3_i| <
// 2^-6; even flushed, its error (< 2^-6 · s in real units) is far below e4m3's own rounding of
// the elements that matter (2^-4 relative), so the scaling costs no accuracy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "util/numeric_formats.h"

#ifdef __CUDACC__
#define GS_FP8KV_FN __host__ __device__ __forceinline__
#else
#define GS_FP8KV_FN inline
#endif

namespace gs::fp8kv {

constexpr float kE4m3Max = 448.0f;
constexpr float kScaleBoost = 0x1p120f;  // S = s · 2^120: bf16's exponent bias minus e4m3's
constexpr float kMinScale = 0x1p-126f;   // bounds of the real scale s
constexpr float kMaxScale = 0x1p7f;

// Byte of a row that holds element i (i and the result may be any index in the row: the
// permutation stays inside each group of 4).
GS_FP8KV_FN int ByteIndex(int i) { return (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1); }

// The bf16 pair (value · 2^-120) of bytes 0 and 2 of a cache word [v0 v2 v1 v3]: (v0, v1).
GS_FP8KV_FN uint32_t Bytes02ToScaledBf16x2(uint32_t a) {
  return ((a << 4) & 0x07F007F0u) | ((a << 8) & 0x80008000u);
}

// The bf16 pair (value · 2^-120) of bytes 1 and 3 of a cache word [v0 v2 v1 v3]: (v2, v3).
GS_FP8KV_FN uint32_t Bytes13ToScaledBf16x2(uint32_t a) {
  return ((a >> 4) & 0x07F007F0u) | (a & 0x80008000u);
}

// Real dequant scale s of a row whose largest |element| is amax (see Scales above).
GS_FP8KV_FN float RowScale(float amax) {
  if (!(amax > 0.0f)) return 1.0f;
  const float s = amax / kE4m3Max;
  return s < kMinScale ? kMinScale : (s > kMaxScale ? kMaxScale : s);
}

// What the cache stores for real scale s, and back (both exact: powers of two, no overflow or
// underflow for s in [2^-126, 2^7]).
GS_FP8KV_FN float StoredScale(float s) { return s * kScaleBoost; }
GS_FP8KV_FN float RealScale(float stored) { return stored * (1.0f / kScaleBoost); }

// ---- host twins (tests): the same bytes and scales as the kernels' writers ----

// Codes of the 8 values x[0..7] times inv, in cache order (kv_store.cuh QuantizeE4m3x8: round to
// nearest even, saturating at ±448).
inline void QuantizeE4m3x8Host(const float* x, float inv, uint8_t* out) {
  for (int i = 0; i < 8; ++i) out[ByteIndex(i)] = FloatToE4m3(x[i] * inv);
}

// A whole row of d values (d a multiple of 8) as KvWriteFp8Kernel writes it: codes in cache
// order into `codes`; returns the stored scale S.
inline float QuantizeRowHost(const float* x, int d, uint8_t* codes) {
  float amax = 0.0f;
  for (int i = 0; i < d; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = RowScale(amax);
  for (int c = 0; c < d; c += 8) QuantizeE4m3x8Host(x + c, 1.0f / s, codes + c);
  return StoredScale(s);
}

// Element i of a cached row (codes in cache order, stored scale S), in real units.
inline float DequantizeHost(const uint8_t* codes, float stored, int i) {
  return E4m3ToFloat(codes[ByteIndex(i)]) * RealScale(stored);
}

}  // namespace gs::fp8kv

#undef GS_FP8KV_FN
