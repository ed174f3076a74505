// W4A16 GEMM for the dense MLP and the routed experts (reference nvfp4 §5.3), also used for BF16
// expert checkpoints through the same packed layout (nvfp4_repack.h).
#include <algorithm>
#include <atomic>
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

constexpr int kWarps = 4;         // kMTiles 16-row tiles per warp (1 or 2)
constexpr int kTokChunk = 64;     // tokens per pass over the weights (8 mma n-tiles)
constexpr int kNTiles = kTokChunk / 8;
// Row stride of the x staging buffer for `m_tiles` tiles per warp (256 or 128 K columns at a
// time): +16 B per row, so the 8 rows of a B fragment hit 8 different banks.
constexpr int XStride(int m_tiles) { return 4 / m_tiles * 64 + 8; }

// y = x · Wᵀ for the rows of one bank, 64 tokens per pass over the weights.
//
// Block (kWarps warps) = kWarps·kMTiles consecutive 16-row tiles of bank `active[blockIdx.y]`,
// each warp kMTiles of them (with 2, every B fragment read from shared memory feeds two MMAs, and the
// weights of 2 k-blocks instead of 4 are prefetched per tile to keep the registers); blockIdx.z
// strides over the bank's 64-token chunks. Per chunk, the block walks K in 256-column steps (128
// with 2 tiles): x rows of the chunk are staged in shared memory (the mma B operand), each warp
// streams its tiles' packed weights (one 16 B code load + 8 B scale load per lane per 64
// columns, the next step's loads issued before this step's math), converts them to bf16 A
// fragments in registers and issues m16n8k16 MMAs against every active 8-token n-tile. fp32
// accumulators; the epilogue applies the fp32 global scale(s) and either GELU_tanh(gate)·up (GLU)
// or the router weight.
template <PackedFormat kFormat, GemmEpilogue kEpi, bool kLdMatrix, int kMTiles = 1>
__global__ void __launch_bounds__(kWarps * 32)
    PackedGemmKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                     void* __restrict__ out, int out_stride) {
  constexpr int kBlocks = 4 / kMTiles;  // k-blocks of weights in flight per tile (cur and next)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* xs = reinterpret_cast<bf16*>(smem_raw);
  // PDL (launch.cuh): the router's lists and x are earlier kernels' outputs. (Loading the dense
  // MLP's first weights before the wait was tried: it cost registers for no gain, the dense
  // products run on a side stream.)
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

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tiles = w.rows / 16, kblocks = w.cols / 64;
  const int tile0 = (blockIdx.x * kWarps + warp) * kMTiles;
  bool has_tile[kMTiles];
  int64_t tile_kb[kMTiles];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    has_tile[mt] = tile0 + mt < tiles;
    tile_kb[mt] = static_cast<int64_t>(has_tile[mt] ? tile0 + mt : 0) * kblocks;
  }
  const uint8_t* code_base = w.codes + bank * w.bank_code_bytes;
  const uint8_t* scale_base = w.scales + bank * w.bank_scale_bytes;
  constexpr int kKChunk = kBlocks * 64;  // K columns of x staged in shared memory at a time
  constexpr int kXStride = XStride(kMTiles);

  for (int c0 = blockIdx.z * kTokChunk; c0 < n_rows; c0 += gridDim.z * kTokChunk) {
    const int mc = min(kTokChunk, n_rows - c0);
    const int nt_active = (mc + 7) / 8;
    float acc[kMTiles][kNTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int i = 0; i < kNTiles; ++i) {
        acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.0f;
      }
    }

    BlockFrag<kFormat> cur[kMTiles][kBlocks], next[kMTiles][kBlocks];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      if (has_tile[mt]) {
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          if (b < kblocks) cur[mt][b].Load(code_base, scale_base, tile_kb[mt] + b, lane);
        }
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
      if (has_tile[0]) {
        const int next_kb = kb0 + kBlocks;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) {
            if (has_tile[mt] && next_kb + b < kblocks) {
              next[mt][b].Load(code_base, scale_base, tile_kb[mt] + next_kb + b, lane);
            }
          }
        }
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          if (b * 64 < kc) {
#pragma unroll
            for (int s = 0; s < 4; ++s) {
              uint32_t a[kMTiles][4];
#pragma unroll
              for (int mt = 0; mt < kMTiles; ++mt) cur[mt][b].Step(s, a[mt]);
              // B fragments of two n-tiles per ldmatrix.x4: lane ℓ addresses row ℓ%8 of
              // matrix ℓ/8 = (n-tile pair half ℓ/16, k half (ℓ/8)%2).
              const int kk = b * 64 + s * 16 + ((lane / 8) % 2) * 8;
              if constexpr (kLdMatrix) {
#pragma unroll
                for (int nt = 0; nt < kNTiles; nt += 2) {
                  if (nt < nt_active) {
                    uint32_t bf[4];
                    LdMatrixX4(xs + ((nt + lane / 16) * 8 + lane % 8) * kXStride + kk, bf);
#pragma unroll
                    for (int mt = 0; mt < kMTiles; ++mt) {
                      Mma(acc[mt][nt], a[mt], bf[0], bf[1]);
                      if (nt + 1 < nt_active) Mma(acc[mt][nt + 1], a[mt], bf[2], bf[3]);
                    }
                  }
                }
              } else {  // two 4-byte shared loads per n-tile
                const int kc = b * 64 + s * 16 + 2 * (lane % 4);
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                  if (nt < nt_active) {
                    const bf16* xr = xs + (nt * 8 + lane / 4) * kXStride + kc;
                    const uint32_t b0 = *reinterpret_cast<const uint32_t*>(xr);
                    const uint32_t b1 = *reinterpret_cast<const uint32_t*>(xr + 8);
#pragma unroll
                    for (int mt = 0; mt < kMTiles; ++mt) Mma(acc[mt][nt], a[mt], b0, b1);
                  }
                }
              }
            }
          }
        }
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) cur[mt][b] = next[mt][b];
        }
      }
    }

#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      if (has_tile[mt]) {
        packed::StoreTile<kEpi, kNTiles>(w, rows, bank, tile0 + mt, r_begin + c0, mc, acc[mt], out,
                                         out_stride);
      }
    }
  }
}

// Which decode kernel serves a product, if any (none: the tiled kernel). GS_GEMV_POLICY (1-7)
// selects among the policies compared in docs/benchmarks.md; the default (7) is the measured
// best: the split-K kernel up to 64 tokens per step, for the dense MLP (32 tokens per pass) and
// the expert banks (each expert then sees a few tokens, looped over in 8-token passes; at 128
// the tiled kernel wins); the cp.async streaming kernel lost everywhere and is kept for
// comparison.
std::optional<GemvKind> DecodeGemvKind(const PackedMatrix& w, const GemmRows& rows) {
  static const int policy = [] {
    const char* env = std::getenv("GS_GEMV_POLICY");
    return env != nullptr ? std::atoi(env) : 7;
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
    case 6:  // the default until the split kernel chose its warps per tile (session 4)
      if (rows.m <= 8 || (experts && rows.m <= 64)) return GemvKind::kSplitK;
      break;
    default:  // 7: measured best on H100 (docs/benchmarks.md, scripts/gpu/gemv_policies.sh)
      if (rows.m <= 64) return GemvKind::kSplitK;
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
  // Tiles per warp: NVFP4 only (BF16 fragments take 4x the registers and would spill).
  const int m_tiles = kFormat == PackedFormat::kNvfp4 ? PackedGemmMTiles() : 1;
  const int tiles = w.rows / 16, tiles_per_block = kWarps * m_tiles;
  const int row_cap = std::min(kTokChunk, (std::max(rows.m, 1) + 15) / 16 * 16);
  const int chunks = (std::max(rows.m, 1) + kTokChunk - 1) / kTokChunk;
  const int blocks_x = (tiles + tiles_per_block - 1) / tiles_per_block;
  const int blocks_xy = blocks_x * std::max(rows.max_active, 1);
  // Split the token chunks over blockIdx.z only when the tiles alone do not fill the device.
  const int z = std::clamp(4 * DeviceSmCount() / std::max(blocks_xy, 1), 1, chunks);
  const dim3 grid(blocks_x, std::max(rows.max_active, 1), z);
  const size_t smem = static_cast<size_t>(row_cap) * XStride(m_tiles) * sizeof(bf16);
  // B fragments by two 4-byte shared loads per n-tile (default) or by ldmatrix.x4
  // (GS_GEMM_LDMATRIX=1): the ldmatrix variant needs 154 instead of 127 registers, drops to 3
  // blocks per SM and measured 26% slower for a 4K prefill on the H100 (docs/benchmarks.md).
  static const bool ldmatrix = [] {
    const char* env = std::getenv("GS_GEMM_LDMATRIX");
    return env != nullptr && std::atoi(env) != 0;
  }();
  auto kernel = ldmatrix ? PackedGemmKernel<kFormat, kEpi, true>
                         : PackedGemmKernel<kFormat, kEpi, false>;
  if constexpr (kFormat == PackedFormat::kNvfp4) {
    if (m_tiles == 2) {
      kernel = ldmatrix ? PackedGemmKernel<kFormat, kEpi, true, 2>
                        : PackedGemmKernel<kFormat, kEpi, false, 2>;
    }
  }
  return LaunchKernel("PackedGemmKernel", kernel, grid, kWarps * 32, smem, stream, w, rows, x,
                      x_stride, out, out_stride);
}

std::atomic<int> g_gemm_m_tiles{0};  // 0: not chosen yet (GS_GEMM_MTILES on first use)

}  // namespace

int PackedGemmMTiles() {
  int m = g_gemm_m_tiles.load(std::memory_order_relaxed);
  if (m == 0) {
    const char* env = std::getenv("GS_GEMM_MTILES");
    // Two tiles per warp by default: on the H100 a 4K prefill runs at 20.7K tok/s with it and
    // 17.3K with one (docs/benchmarks.md); GS_GEMM_MTILES=1 selects the one-tile kernel.
    m = env != nullptr && std::atoi(env) == 1 ? 1 : 2;
    g_gemm_m_tiles.store(m, std::memory_order_relaxed);
  }
  return m;
}

void SetPackedGemmMTiles(int m_tiles) {
  g_gemm_m_tiles.store(m_tiles == 2 ? 2 : 1, std::memory_order_relaxed);
}

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
