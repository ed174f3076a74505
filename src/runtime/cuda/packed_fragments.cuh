// Device helpers shared by the packed W4A16 kernels (nvfp4_gemm.cu for prefill, nvfp4_gemv.cu for
// decode): streaming loads, the code/scale → bf16 conversions of nvfp4_repack.h's layout, the
// m16n8k16 MMA, GELU_tanh and the epilogue that stores one accumulator pair.
#pragma once

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

// x << n for n >= 0, x >> -n otherwise (n is a compile-time constant after unrolling).
template <int kShift>
__device__ __forceinline__ uint32_t Shift(uint32_t x) {
  if constexpr (kShift >= 0) {
    return x << kShift;
  } else {
    return x >> -kShift;
  }
}

// Fragment register a_i of a k16 step from code word `word` (nvfp4_repack.h): the low-half code
// at bits 4i..4i+3 and the high-half code at 16+4i.. become two bf16 e2m1·2^-126, the magnitude
// (e1 e0 m) at bf16 bits 8..6 and the sign at bit 15. Code 1 (0.5) becomes the subnormal 2^-127;
// code 0 is +0.
template <int kI>
__device__ __forceinline__ uint32_t CodesToBf16x2(uint32_t word) {
  return (Shift<6 - 4 * kI>(word) & 0x01C001C0u) | (Shift<12 - 4 * kI>(word) & 0x80008000u);
}

// Block scale of group kS (byte kS of `four`, a packed q of nvfp4_repack.h) -> bf16x2 of
// |s|·2^110 in both halves: q is moved to bytes 0 and 2 (selector 4 = a zero byte), then
// (q << 4) + 0x7180 per half (no carry: q <= 150). Exact; times a code above: e2m1·s·2^-16.
template <int kS>
__device__ __forceinline__ uint32_t ScaleToBf16x2(uint32_t four) {
  return __byte_perm(four, 0u, 0x4040u | (kS * 0x101u)) * 16u + 0x71807180u;
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
  __device__ __forceinline__ void Step(int s, uint32_t (&a)[4]) const {
    switch (s) {
      case 0: return StepOf<0>(codes.x, a);
      case 1: return StepOf<1>(codes.y, a);
      case 2: return StepOf<2>(codes.z, a);
      default: return StepOf<3>(codes.w, a);
    }
  }
  template <int kS>
  __device__ __forceinline__ void StepOf(uint32_t word, uint32_t (&a)[4]) const {
    const uint32_t s_lo = ScaleToBf16x2<kS>(scales.x);  // row r0, group s
    const uint32_t s_hi = ScaleToBf16x2<kS>(scales.y);  // row r0 + 8
    a[0] = MulBf16x2(CodesToBf16x2<0>(word), s_lo);
    a[1] = MulBf16x2(CodesToBf16x2<1>(word), s_hi);
    a[2] = MulBf16x2(CodesToBf16x2<2>(word), s_lo);
    a[3] = MulBf16x2(CodesToBf16x2<3>(word), s_hi);
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

// Stores a warp's accumulators of one 16-row tile for the chunk of `mc` token rows starting at
// entry `first` (acc[nt] = n-tile nt, the mma C layout: lane ℓ holds columns 2(ℓ%4), +1 of rows
// ℓ/4 and ℓ/4 + 8).
template <GemmEpilogue kEpi, int NT>
__device__ __forceinline__ void StoreTile(const PackedMatrix& w, const GemmRows& rows, int bank,
                                          int tile, int first, int mc, const float (&acc)[NT][4],
                                          void* out, int out_stride) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int t = nt * 8 + 2 * (lane % 4) + j;  // token column of acc[nt][j] and [j + 2]
      if (t >= mc) continue;
      const int e = first + t;
      const int out_row = rows.entries != nullptr ? rows.entries[e] : e;
      StorePair<kEpi>(w, rows, bank, tile, lane / 4, out_row, acc[nt][j], acc[nt][j + 2], out,
                      out_stride);
    }
  }
}

}  // namespace gs::cuda::packed
