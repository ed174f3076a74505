// Device helpers shared by the packed W4A16 kernels (nvfp4_gemm.cu for prefill, nvfp4_gemv.cu for
// decode): streaming loads, the e2m1/e4m3 → bf16 conversions of nvfp4_repack.h's layout, the
// m16n8k16 MMA, GELU_tanh and the epilogue that stores one accumulator pair.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "runtime/cuda/kernels.h"

namespace gs::cuda::packed {

__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

__device__ __forceinline__ uint2 LoadStreaming(const uint2* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

// Two e2m1 codes (one byte, low nibble first) -> bf16x2 holding e2m1·2^-126 each: the nibble's
// magnitude bits (e1 e0 m) go to bf16 bits 8..6 (exponent LSBs + mantissa MSB) and its sign to
// bit 15. Code 1 (0.5) becomes the subnormal 2^-127; code 0 is +0.
__device__ __forceinline__ uint32_t E2m1PairToBf16x2(uint32_t byte) {
  const uint32_t lo = ((byte & 0x8u) << 12) | ((byte & 0x7u) << 6);
  const uint32_t hi = ((byte & 0x80u) << 24) | ((byte & 0x70u) << 18);
  return lo | hi;
}

// e4m3 block scale -> bf16x2 (both halves) of s·2^110; exact (s has 4 significant bits and
// s·2^110 lies in [2^101, 2^119]). Times a code above: e2m1·s·2^-16, a normal bf16, exact.
__device__ __forceinline__ uint32_t ScaleToBf16x2(uint32_t byte) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(byte), __NV_E4M3);
  const float f = __half2float(__half(h)) * 0x1p110f;
  const __nv_bfloat16 b = __float2bfloat16_rn(f);
  const uint32_t bits = __bfloat16_as_ushort(b);
  return bits | (bits << 16);
}

__device__ __forceinline__ uint32_t MulBf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a),
                             *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}

// D = A·B + D, A 16×16 bf16 (row), B 16×8 bf16 (col), fp32 accumulators.
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float GeluTanh(float z) {
  const float k = 0.7978845608028654f;  // √(2/π)
  return 0.5f * z * (1.0f + tanhf(k * (z + 0.044715f * z * z * z)));
}

// The weights of one 64-column k-block as held by one lane.
template <PackedFormat kFormat>
struct BlockFrag;

template <>
struct BlockFrag<PackedFormat::kNvfp4> {
  uint4 codes;
  uint2 scales;
  __device__ void Load(const uint8_t* code_base, const uint8_t* scale_base, int64_t tk, int lane) {
    codes = LoadStreaming(reinterpret_cast<const uint4*>(code_base) + tk * 32 + lane);
    scales = LoadStreaming(reinterpret_cast<const uint2*>(scale_base) + tk * 8 + lane / 4);
  }
  // A fragment of k16 step s: registers a0..a3 = rows r0, r0+8 of columns c and c+8.
  __device__ void Step(int s, uint32_t (&a)[4]) const {
    const uint32_t word = s == 0 ? codes.x : s == 1 ? codes.y : s == 2 ? codes.z : codes.w;
    const uint32_t s_lo = ScaleToBf16x2((scales.x >> (8 * s)) & 0xffu);  // row r0, group s
    const uint32_t s_hi = ScaleToBf16x2((scales.y >> (8 * s)) & 0xffu);  // row r0 + 8
    a[0] = MulBf16x2(E2m1PairToBf16x2(word & 0xffu), s_lo);
    a[1] = MulBf16x2(E2m1PairToBf16x2((word >> 8) & 0xffu), s_hi);
    a[2] = MulBf16x2(E2m1PairToBf16x2((word >> 16) & 0xffu), s_lo);
    a[3] = MulBf16x2(E2m1PairToBf16x2(word >> 24), s_hi);
  }
};

template <>
struct BlockFrag<PackedFormat::kBf16> {
  uint4 v[4];
  __device__ void Load(const uint8_t* code_base, const uint8_t*, int64_t tk, int lane) {
    const uint4* p = reinterpret_cast<const uint4*>(code_base) + tk * 128 + lane;
#pragma unroll
    for (int s = 0; s < 4; ++s) v[s] = LoadStreaming(p + s * 32);
  }
  __device__ void Step(int s, uint32_t (&a)[4]) const {
    a[0] = v[s].x;
    a[1] = v[s].y;
    a[2] = v[s].z;
    a[3] = v[s].w;
  }
};

// Stores the two accumulator values of one lane for output row `out_row` of 16-row tile `tile`:
// GLU: `lo` and `hi` are gate j and up j (j = tile·8 + row8), out[row, j] = bf16(gelu(g)·u);
// store: rows tile·16 + row8 and + 8, × the global scale (× the router weight of the row).
template <GemmEpilogue kEpi>
__device__ __forceinline__ void StorePair(const PackedMatrix& w, const GemmRows& rows, int bank,
                                          int tile, int row8, int out_row, float lo, float hi,
                                          void* out, int out_stride) {
  if constexpr (kEpi == GemmEpilogue::kGluBf16) {
    const float g = lo * w.global_scales[2 * bank];
    const float u = hi * w.global_scales[2 * bank + 1];
    static_cast<bf16*>(out)[static_cast<int64_t>(out_row) * out_stride + tile * 8 + row8] =
        __float2bfloat16_rn(GeluTanh(g) * u);
  } else {
    float scale = w.global_scales[bank];
    if (rows.row_weight != nullptr) scale *= rows.row_weight[out_row];
    float* o = static_cast<float*>(out) + static_cast<int64_t>(out_row) * out_stride + tile * 16 +
               row8;
    o[0] = lo * scale;
    o[8] = hi * scale;
  }
}

}  // namespace gs::cuda::packed
