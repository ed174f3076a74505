// W4A16 GEMM for the dense MLP and the routed experts (reference nvfp4 §5.3), also used for BF16
// expert checkpoints through the same packed layout (nvfp4_repack.h).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

constexpr int kWarps = 4;         // one 16-row tile per warp, 4 tiles per block
constexpr int kTokChunk = 64;     // tokens per pass over the weights (8 mma n-tiles)
constexpr int kNTiles = kTokChunk / 8;
constexpr int kKChunk = 256;      // K columns of x staged in shared memory at a time
constexpr int kXStride = kKChunk + 8;  // +16 B per row: the 8 rows of a B fragment hit 8 banks
// Rows per bank (upper bound) served by PackedGemvKernel. Measured (H200, ncu): at 32 and 128
// rows its L1-read x operand (8 scattered 4 B loads per k16 step and n-tile) made it 5-10x slower
// than PackedGemmKernel's shared-memory staging, so only single-n-tile batches use it.
constexpr int kGemvMaxRows = 8;

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

// y = x · Wᵀ for the rows of one bank, 64 tokens per pass over the weights.
//
// Block (kWarps warps) = kWarps consecutive 16-row tiles of bank `active[blockIdx.y]`; blockIdx.z
// strides over the bank's 64-token chunks. Per chunk, the block walks K in 256-column steps:
// x rows of the chunk are staged in shared memory (the mma B operand), each warp streams its
// tile's packed weights (one 16 B code load + 8 B scale load per lane per 64 columns, the next
// step's loads issued before this step's math), converts them to bf16 A fragments in registers
// and issues m16n8k16 MMAs against every active 8-token n-tile. fp32 accumulators; the epilogue
// applies the fp32 global scale(s) and either GELU_tanh(gate)·up (GLU) or the router weight.
template <PackedFormat kFormat, GemmEpilogue kEpi>
__global__ void __launch_bounds__(kWarps * 32)
    PackedGemmKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                     void* __restrict__ out, int out_stride) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* xs = reinterpret_cast<bf16*>(smem_raw);

  int bank = 0;
  if (rows.active != nullptr) {
    if (static_cast<int>(blockIdx.y) >= *rows.active_count) return;
    bank = rows.active[blockIdx.y];
  }
  int r_begin = 0, r_end = rows.m;
  if (rows.offsets != nullptr) {
    r_begin = rows.offsets[bank];
    r_end = rows.offsets[bank + 1];
  }
  const int n_rows = r_end - r_begin;
  if (n_rows <= 0) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tiles = w.rows / 16, kblocks = w.cols / 64;
  const int tile = blockIdx.x * kWarps + warp;
  const bool has_tile = tile < tiles;
  const uint8_t* code_base = w.codes + bank * w.bank_code_bytes;
  const uint8_t* scale_base = w.scales + bank * w.bank_scale_bytes;
  const int64_t tile_kb = static_cast<int64_t>(has_tile ? tile : 0) * kblocks;

  for (int c0 = blockIdx.z * kTokChunk; c0 < n_rows; c0 += gridDim.z * kTokChunk) {
    const int mc = min(kTokChunk, n_rows - c0);
    const int nt_active = (mc + 7) / 8;
    float acc[kNTiles][4];
#pragma unroll
    for (int i = 0; i < kNTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    BlockFrag<kFormat> cur[4], next[4];
    if (has_tile) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        if (b < kblocks) cur[b].Load(code_base, scale_base, tile_kb + b, lane);
      }
    }
    for (int k0 = 0; k0 < w.cols; k0 += kKChunk) {
      const int kc = min(kKChunk, w.cols - k0);
      const int kb0 = k0 / 64;
      __syncthreads();  // the previous step's x is no longer read
      const int vec_per_row = kc / 8;
      for (int i = threadIdx.x; i < nt_active * 8 * vec_per_row; i += blockDim.x) {
        const int r = i / vec_per_row, cc = (i % vec_per_row) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < mc) {
          const int e = r_begin + c0 + r;
          const int in_row = rows.entries != nullptr ? rows.entries[e] / rows.in_div : e;
          v = *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(in_row) * x_stride + k0 + cc);
        }
        *reinterpret_cast<uint4*>(xs + r * kXStride + cc) = v;
      }
      __syncthreads();
      if (has_tile) {
        const int next_kb = kb0 + kKChunk / 64;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          if (next_kb + b < kblocks) next[b].Load(code_base, scale_base, tile_kb + next_kb + b, lane);
        }
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          if (b * 64 < kc) {
#pragma unroll
            for (int s = 0; s < 4; ++s) {
              uint32_t a[4];
              cur[b].Step(s, a);
              const int kk = b * 64 + s * 16 + 2 * (lane % 4);
#pragma unroll
              for (int nt = 0; nt < kNTiles; ++nt) {
                if (nt < nt_active) {
                  const bf16* xr = xs + (nt * 8 + lane / 4) * kXStride + kk;
                  const uint32_t b0 = *reinterpret_cast<const uint32_t*>(xr);
                  const uint32_t b1 = *reinterpret_cast<const uint32_t*>(xr + 8);
                  Mma(acc[nt], a, b0, b1);
                }
              }
            }
          }
        }
#pragma unroll
        for (int b = 0; b < 4; ++b) cur[b] = next[b];
      }
    }

    if (!has_tile) continue;
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      if (nt >= nt_active) break;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int t = nt * 8 + 2 * (lane % 4) + j;  // token column of acc[nt][j] and [j + 2]
        if (t >= mc) continue;
        const int e = r_begin + c0 + t;
        const int out_row = rows.entries != nullptr ? rows.entries[e] : e;
        if constexpr (kEpi == GemmEpilogue::kGluBf16) {
          const float g = acc[nt][j] * w.global_scales[2 * bank];
          const float u = acc[nt][j + 2] * w.global_scales[2 * bank + 1];
          const int col = tile * 8 + lane / 4;
          static_cast<bf16*>(out)[static_cast<int64_t>(out_row) * out_stride + col] =
              __float2bfloat16_rn(GeluTanh(g) * u);
        } else {
          float scale = w.global_scales[bank];
          if (rows.row_weight != nullptr) scale *= rows.row_weight[out_row];
          float* o = static_cast<float*>(out) + static_cast<int64_t>(out_row) * out_stride +
                     tile * 16 + lane / 4;
          o[0] = acc[nt][j] * scale;
          o[8] = acc[nt][j + 2] * scale;
        }
      }
    }
  }
}

// Small-batch variant (decode): split-K across the warps of a block, so that even a single
// token keeps many weight loads in flight (each warp streams every kSplit-th k-block of the same
// 16-row tile, up to kDepth k-blocks loaded before the first is used).
//
// Block (kSplit warps) = one 16-row tile of bank `active[blockIdx.y]`; tokens in chunks of
// 8·NT (NT mma n-tiles; empty n-tiles of a chunk are skipped). The x operand is read straight
// from global memory (L1-cached: the block's warps read each x row once between them). The
// partial accumulators of the warps are summed in shared memory in warp order (deterministic),
// then the epilogue of PackedGemmKernel is applied.
constexpr int kSplit = 8;
constexpr int kDepth = 6;

template <PackedFormat kFormat, GemmEpilogue kEpi, int NT>
__global__ void __launch_bounds__(kSplit * 32)
    PackedGemvKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                     void* __restrict__ out, int out_stride) {
  __shared__ float red[kSplit][NT * 4][32];
  int bank = 0;
  if (rows.active != nullptr) {
    if (static_cast<int>(blockIdx.y) >= *rows.active_count) return;
    bank = rows.active[blockIdx.y];
  }
  int r_begin = 0, r_end = rows.m;
  if (rows.offsets != nullptr) {
    r_begin = rows.offsets[bank];
    r_end = rows.offsets[bank + 1];
  }
  const int n_rows = r_end - r_begin;
  if (n_rows <= 0) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tile = blockIdx.x, kblocks = w.cols / 64;
  const uint8_t* code_base = w.codes + bank * w.bank_code_bytes;
  const uint8_t* scale_base = w.scales + bank * w.bank_scale_bytes;
  const int64_t tile_kb = static_cast<int64_t>(tile) * kblocks;
  const int my_kbs = warp < kblocks ? (kblocks - warp + kSplit - 1) / kSplit : 0;

  for (int c0 = 0; c0 < n_rows; c0 += 8 * NT) {
    const int mc = min(8 * NT, n_rows - c0);
    const int nt_active = (mc + 7) / 8;
    // x row of this lane's B column (token c0 + nt·8 + lane/4), or null past the chunk.
    const bf16* xrow[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int t = nt * 8 + lane / 4;
      xrow[nt] = nullptr;
      if (t < mc) {
        const int e = r_begin + c0 + t;
        const int in_row = rows.entries != nullptr ? rows.entries[e] / rows.in_div : e;
        xrow[nt] = x + static_cast<int64_t>(in_row) * x_stride + 2 * (lane % 4);
      }
    }
    float acc[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    for (int i0 = 0; i0 < my_kbs; i0 += kDepth) {
      BlockFrag<kFormat> frag[kDepth];
#pragma unroll
      for (int i = 0; i < kDepth; ++i) {
        if (i0 + i < my_kbs) {
          frag[i].Load(code_base, scale_base, tile_kb + warp + (i0 + i) * kSplit, lane);
        }
      }
#pragma unroll
      for (int i = 0; i < kDepth; ++i) {
        if (i0 + i >= my_kbs) break;
        const int kcol = (warp + (i0 + i) * kSplit) * 64;
        uint32_t b[NT][4][2];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
          for (int st = 0; st < 4; ++st) {
            b[nt][st][0] = b[nt][st][1] = 0;
            if (nt < nt_active && xrow[nt] != nullptr) {
              const uint32_t* p = reinterpret_cast<const uint32_t*>(xrow[nt] + kcol + st * 16);
              b[nt][st][0] = __ldg(p);
              b[nt][st][1] = __ldg(p + 4);
            }
          }
        }
#pragma unroll
        for (int st = 0; st < 4; ++st) {
          uint32_t a[4];
          frag[i].Step(st, a);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            if (nt < nt_active) Mma(acc[nt], a, b[nt][st][0], b[nt][st][1]);
          }
        }
      }
    }

#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) red[warp][nt * 4 + j][lane] = acc[nt][j];
    }
    __syncthreads();
    // Thread = (n-tile, column pair j, lane): sums the warps' partials in order.
    for (int i = threadIdx.x; i < nt_active * 2 * 32; i += blockDim.x) {
      const int nt = i / 64, j = (i / 32) % 2, ln = i % 32;
      const int t = nt * 8 + 2 * (ln % 4) + j;
      float lo = 0.0f, hi = 0.0f;  // acc[nt][j] and acc[nt][j + 2]
#pragma unroll
      for (int wp = 0; wp < kSplit; ++wp) {
        lo += red[wp][nt * 4 + j][ln];
        hi += red[wp][nt * 4 + j + 2][ln];
      }
      if (t >= mc) continue;
      const int e = r_begin + c0 + t;
      const int out_row = rows.entries != nullptr ? rows.entries[e] : e;
      if constexpr (kEpi == GemmEpilogue::kGluBf16) {
        const float g = lo * w.global_scales[2 * bank];
        const float u = hi * w.global_scales[2 * bank + 1];
        const int col = tile * 8 + ln / 4;
        static_cast<bf16*>(out)[static_cast<int64_t>(out_row) * out_stride + col] =
            __float2bfloat16_rn(GeluTanh(g) * u);
      } else {
        float scale = w.global_scales[bank];
        if (rows.row_weight != nullptr) scale *= rows.row_weight[out_row];
        float* o = static_cast<float*>(out) + static_cast<int64_t>(out_row) * out_stride +
                   tile * 16 + ln / 4;
        o[0] = lo * scale;
        o[8] = hi * scale;
      }
    }
    __syncthreads();  // red is rewritten by the next chunk
  }
}

template <PackedFormat kFormat, GemmEpilogue kEpi, int NT>
Status LaunchGemv(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                  void* out, int out_stride, cudaStream_t stream) {
  const dim3 grid(w.rows / 16, std::max(rows.max_active, 1));
  PackedGemvKernel<kFormat, kEpi, NT><<<grid, kSplit * 32, 0, stream>>>(w, rows, x, x_stride, out,
                                                                       out_stride);
  GS_CUDA_CHECK_LAUNCH("PackedGemvKernel");
  return Ok();
}

template <PackedFormat kFormat, GemmEpilogue kEpi>
Status Launch(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride, void* out,
              int out_stride, cudaStream_t stream) {
  // Up to kGemvMaxRows rows per bank (decode batches), the split-K kernel; NT covers the bound.
  if (rows.m <= kGemvMaxRows) {
    return LaunchGemv<kFormat, kEpi, 1>(w, rows, x, x_stride, out, out_stride, stream);
  }
  const int tiles = w.rows / 16;
  const int row_cap = std::min(kTokChunk, (std::max(rows.m, 1) + 7) / 8 * 8);
  const int chunks = (std::max(rows.m, 1) + kTokChunk - 1) / kTokChunk;
  const int blocks_xy = (tiles + kWarps - 1) / kWarps * std::max(rows.max_active, 1);
  // Split the token chunks over blockIdx.z only when the tiles alone do not fill the device.
  const int z = std::clamp(4 * DeviceSmCount() / std::max(blocks_xy, 1), 1, chunks);
  const dim3 grid((tiles + kWarps - 1) / kWarps, std::max(rows.max_active, 1), z);
  const size_t smem = static_cast<size_t>(row_cap) * kXStride * sizeof(bf16);
  PackedGemmKernel<kFormat, kEpi><<<grid, kWarps * 32, smem, stream>>>(w, rows, x, x_stride, out,
                                                                        out_stride);
  GS_CUDA_CHECK_LAUNCH("PackedGemmKernel");
  return Ok();
}

}  // namespace

int DeviceSmCount() {
  static int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      return 132;
    }
    return n;
  }();
  return count;
}

Status LaunchPackedGemm(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                        void* out, int out_stride, GemmEpilogue epilogue, cudaStream_t stream) {
  if (w.rows % 16 != 0 || w.cols % 64 != 0 || x_stride % 8 != 0) {
    return MakeError("LaunchPackedGemm: unsupported shape [", w.rows, ", ", w.cols,
                     "] or x stride ", x_stride);
  }
  if (rows.m <= 0) return Ok();
  const bool glu = epilogue == GemmEpilogue::kGluBf16;
  if (w.format == PackedFormat::kNvfp4) {
    return glu ? Launch<PackedFormat::kNvfp4, GemmEpilogue::kGluBf16>(w, rows, x, x_stride, out,
                                                                       out_stride, stream)
               : Launch<PackedFormat::kNvfp4, GemmEpilogue::kStoreF32>(w, rows, x, x_stride, out,
                                                                        out_stride, stream);
  }
  return glu ? Launch<PackedFormat::kBf16, GemmEpilogue::kGluBf16>(w, rows, x, x_stride, out,
                                                                    out_stride, stream)
             : Launch<PackedFormat::kBf16, GemmEpilogue::kStoreF32>(w, rows, x, x_stride, out,
                                                                     out_stride, stream);
}

}  // namespace gs::cuda
