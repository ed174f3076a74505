// W4A16 GEMM for the dense MLP and the routed experts (reference nvfp4 §5.3), also used for BF16
// expert checkpoints through the same packed layout (nvfp4_repack.h).
#include <algorithm>
#include <cstdlib>
#include <optional>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/packed_fragments.cuh"

namespace gs::cuda {
namespace {

using packed::BlockFrag;
using packed::Mma;

// Four 8×8 bf16 matrices from shared memory (one row address per lane, lanes 8i..8i+7 for
// matrix i); register i holds matrix i as an mma fragment (lane ℓ: row ℓ/4, columns 2(ℓ%4), +1).
__device__ __forceinline__ void LdMatrixX4(const bf16* row, uint32_t (&r)[4]) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

constexpr int kWarps = 4;         // one 16-row tile per warp, 4 tiles per block
constexpr int kTokChunk = 64;     // tokens per pass over the weights (8 mma n-tiles)
constexpr int kNTiles = kTokChunk / 8;
constexpr int kKChunk = 256;      // K columns of x staged in shared memory at a time
constexpr int kXStride = kKChunk + 8;  // +16 B per row: the 8 rows of a B fragment hit 8 banks

// y = x · Wᵀ for the rows of one bank, 64 tokens per pass over the weights.
//
// Block (kWarps warps) = kWarps consecutive 16-row tiles of bank `active[blockIdx.y]`; blockIdx.z
// strides over the bank's 64-token chunks. Per chunk, the block walks K in 256-column steps:
// x rows of the chunk are staged in shared memory (the mma B operand), each warp streams its
// tile's packed weights (one 16 B code load + 8 B scale load per lane per 64 columns, the next
// step's loads issued before this step's math), converts them to bf16 A fragments in registers
// and issues m16n8k16 MMAs against every active 8-token n-tile. fp32 accumulators; the epilogue
// applies the fp32 global scale(s) and either GELU_tanh(gate)·up (GLU) or the router weight.
template <PackedFormat kFormat, GemmEpilogue kEpi, bool kLdMatrix>
__global__ void __launch_bounds__(kWarps * 32)
    PackedGemmKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                     void* __restrict__ out, int out_stride) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* xs = reinterpret_cast<bf16*>(smem_raw);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tiles = w.rows / 16, kblocks = w.cols / 64;
  const int tile = blockIdx.x * kWarps + warp;
  const bool has_tile = tile < tiles;
  const int64_t tile_kb = static_cast<int64_t>(has_tile ? tile : 0) * kblocks;
  // A single matrix (dense MLP: no active list) is known before the PDL wait (launch.cuh): the
  // first chunk's first four k-blocks of weights load while the previous kernel finishes. A
  // bank's id comes from the router's active list (an earlier kernel's output): after the wait.
  BlockFrag<kFormat> cur[4];
  const bool preloaded = rows.active == nullptr && has_tile;
  if (preloaded) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      if (b < kblocks) cur[b].Load(w.codes, w.scales, tile_kb + b, lane);
    }
  }
  GridDependencyWait();
  TriggerDependentsIfOneWave();

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
  const uint8_t* code_base = w.codes + bank * w.bank_code_bytes;
  const uint8_t* scale_base = w.scales + bank * w.bank_scale_bytes;

  for (int c0 = blockIdx.z * kTokChunk; c0 < n_rows; c0 += gridDim.z * kTokChunk) {
    const int mc = min(kTokChunk, n_rows - c0);
    const int nt_active = (mc + 7) / 8;
    float acc[kNTiles][4];
#pragma unroll
    for (int i = 0; i < kNTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    BlockFrag<kFormat> next[4];
    if (has_tile && !(preloaded && c0 == static_cast<int>(blockIdx.z) * kTokChunk)) {
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
      // Whole n-tile pairs are staged (zeros past the chunk): ldmatrix reads them in pairs.
      const int staged_rows = (nt_active + 1) / 2 * 16;
      for (int i = threadIdx.x; i < staged_rows * vec_per_row; i += blockDim.x) {
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
              // B fragments of two n-tiles per ldmatrix.x4: lane ℓ addresses row ℓ%8 of
              // matrix ℓ/8 = (n-tile pair half ℓ/16, k half (ℓ/8)%2).
              const int kk = b * 64 + s * 16 + ((lane / 8) % 2) * 8;
              if constexpr (kLdMatrix) {
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt += 2) {
                  if (nt < nt_active) {
                    uint32_t bf[4];
                    LdMatrixX4(xs + ((nt + lane / 16) * 8 + lane % 8) * kXStride + kk, bf);
                    Mma(acc[nt], a, bf[0], bf[1]);
                    if (nt + 1 < nt_active) Mma(acc[nt + 1], a, bf[2], bf[3]);
                  }
                }
              } else {  // two 4-byte shared loads per n-tile
                const int kc = b * 64 + s * 16 + 2 * (lane % 4);
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                  if (nt < nt_active) {
                    const bf16* xr = xs + (nt * 8 + lane / 4) * kXStride + kc;
                    Mma(acc[nt], a, *reinterpret_cast<const uint32_t*>(xr),
                        *reinterpret_cast<const uint32_t*>(xr + 8));
                  }
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
        packed::StorePair<kEpi>(w, rows, bank, tile, lane / 4, out_row, acc[nt][j],
                                acc[nt][j + 2], out, out_stride);
      }
    }
  }
}

// Which decode kernel serves a product, if any (none: the tiled kernel). GS_GEMV_POLICY (1-6)
// selects among the policies compared in docs/benchmarks.md; the default (6) is the measured
// best: split-K for ≤ 8 rows, and for expert banks up to 64 tokens per step (each expert then
// sees a few tokens, the split-K kernel loops over them in 8-token passes; at 128 the tiled
// kernel wins); the cp.async streaming kernel lost everywhere and is kept for comparison.
std::optional<GemvKind> DecodeGemvKind(const PackedMatrix& w, const GemmRows& rows) {
  static const int policy = [] {
    const char* env = std::getenv("GS_GEMV_POLICY");
    return env != nullptr ? std::atoi(env) : 6;
  }();
  const bool experts = rows.offsets != nullptr;
  switch (policy) {
    case 2:
      if (rows.m <= 128) return GemvKind::kStream;
      break;
    case 3:
      if (rows.m <= 8 || (experts && rows.m <= 128)) return GemvKind::kSplitK;
      break;
    case 4:
      if (experts && rows.m <= 128) return GemvKind::kStream;
      if (rows.m <= 8) return GemvKind::kSplitK;
      break;
    case 5:
      if (experts && rows.m <= 128) return w.cols <= 1024 ? GemvKind::kStream : GemvKind::kSplitK;
      if (rows.m <= 8) return GemvKind::kSplitK;
      break;
    case 1:
      if (rows.m <= 8) return GemvKind::kSplitK;
      break;
    default:  // 6: measured best on H100 (docs/benchmarks.md, scripts/gpu/gemv_policies.sh)
      if (rows.m <= 8 || (experts && rows.m <= 64)) return GemvKind::kSplitK;
      break;
  }
  return std::nullopt;
}

template <PackedFormat kFormat, GemmEpilogue kEpi>
Status Launch(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride, void* out,
              int out_stride, cudaStream_t stream) {
  if (kFormat == PackedFormat::kNvfp4) {
    if (const auto kind = DecodeGemvKind(w, rows)) {
      return LaunchPackedGemv(w, rows, x, x_stride, out, out_stride, kEpi, *kind, stream);
    }
  }
  const int tiles = w.rows / 16;
  const int row_cap = std::min(kTokChunk, (std::max(rows.m, 1) + 15) / 16 * 16);
  const int chunks = (std::max(rows.m, 1) + kTokChunk - 1) / kTokChunk;
  const int blocks_xy = (tiles + kWarps - 1) / kWarps * std::max(rows.max_active, 1);
  // Split the token chunks over blockIdx.z only when the tiles alone do not fill the device.
  const int z = std::clamp(4 * DeviceSmCount() / std::max(blocks_xy, 1), 1, chunks);
  const dim3 grid((tiles + kWarps - 1) / kWarps, std::max(rows.max_active, 1), z);
  const size_t smem = static_cast<size_t>(row_cap) * kXStride * sizeof(bf16);
  // B fragments by two 4-byte shared loads per n-tile (default) or by ldmatrix.x4
  // (GS_GEMM_LDMATRIX=1): the ldmatrix variant needs 154 instead of 127 registers, drops to 3
  // blocks per SM and measured 26% slower for a 4K prefill on the H100 (docs/benchmarks.md).
  static const bool ldmatrix = [] {
    const char* env = std::getenv("GS_GEMM_LDMATRIX");
    return env != nullptr && std::atoi(env) != 0;
  }();
  auto kernel = ldmatrix ? PackedGemmKernel<kFormat, kEpi, true>
                         : PackedGemmKernel<kFormat, kEpi, false>;
  return LaunchKernel("PackedGemmKernel", kernel, grid, kWarps * 32, smem, stream, w, rows, x,
                      x_stride, out, out_stride);
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
