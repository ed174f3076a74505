// Decode-size W4A16 products (≤ kGemvMaxRows token rows per bank): the same math as
// nvfp4_gemm.cu's PackedGemmKernel, y = x · Wᵀ with per-bank fp32 global scales and the GLU or
// store epilogue, organised to stream the weights at memory bandwidth when only a few tokens use
// each matrix (reference nvfp4 §5.3).
//
// Work item = (active bank, 16-row tile): its packed codes (K/64 × 512 B) and scales
// (K/64 × 64 B) are contiguous (nvfp4_repack.h), so one item is one contiguous copy. A persistent
// grid of blocks takes contiguous runs of items (consecutive tiles of one bank share their x
// rows) and streams them through a kStages-deep ring of shared-memory stages with cp.async:
// while the 8 warps compute item i, the copies of items i+1 .. i+kStages-1 are in flight, so
// every SM keeps ~75-100 KB of weight reads outstanding without holding them in registers.
//
// Per item, tokens in passes of 8 (one m16n8k16 n-tile): warp w takes k-blocks w, w+8, …
// (split-K), converts each 64-column block of the tile into bf16 A fragments
// (e2m1·2^-126 × e4m3·2^110, exact) and multiplies with the tokens' x columns (read through L1:
// every warp of the block reads the same few x rows). The 8 partial accumulators are summed in
// shared memory in warp order (deterministic), then the epilogue of packed_fragments.cuh.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <type_traits>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/packed_fragments.cuh"

namespace gs::cuda {
namespace {

constexpr int kSplit = 8;  // warps per block, each a share of the k-blocks
constexpr int kThreads = kSplit * 32;
constexpr int kStages = 4;
constexpr int kCodeBytesPerBlock = 512;  // one (tile, k-block) of e2m1 codes
constexpr int kScaleBytesPerBlock = 64;  // its e4m3 scales

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

struct ItemGeometry {
  int tiles, kblocks, code_bytes, stage_bytes;
};

__device__ __forceinline__ ItemGeometry Geometry(const PackedMatrix& w) {
  ItemGeometry g;
  g.tiles = w.rows / 16;
  g.kblocks = w.cols / 64;
  g.code_bytes = g.kblocks * kCodeBytesPerBlock;
  g.stage_bytes = g.code_bytes + g.kblocks * kScaleBytesPerBlock;
  return g;
}

__device__ __forceinline__ int ItemBank(const GemmRows& rows, int item, int tiles) {
  return rows.active != nullptr ? rows.active[item / tiles] : 0;
}

// Every thread copies its 16 B pieces of item `item`'s codes and scales into `stage`.
__device__ __forceinline__ void IssueItem(const PackedMatrix& w, const GemmRows& rows,
                                          const ItemGeometry& g, int item, unsigned char* stage) {
  const int bank = ItemBank(rows, item, g.tiles), tile = item % g.tiles;
  const uint8_t* codes = w.codes + bank * w.bank_code_bytes +
                         static_cast<int64_t>(tile) * g.code_bytes;
  const uint8_t* scales = w.scales + bank * w.bank_scale_bytes +
                          static_cast<int64_t>(tile) * g.kblocks * kScaleBytesPerBlock;
  for (int off = threadIdx.x * 16; off < g.stage_bytes; off += kThreads * 16) {
    CpAsync16(stage + off, off < g.code_bytes ? codes + off : scales + (off - g.code_bytes));
  }
}

// One item from its shared-memory stage: all of the bank's token rows, 8 per pass.
template <GemmEpilogue kEpi>
__device__ void ComputeItem(const PackedMatrix& w, const GemmRows& rows, const ItemGeometry& g,
                            int item, const unsigned char* stage, const bf16* __restrict__ x,
                            int x_stride, void* __restrict__ out, int out_stride,
                            float (*red)[4][32]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bank = ItemBank(rows, item, g.tiles), tile = item % g.tiles;
  int r_begin = 0, r_end = rows.m;
  if (rows.offsets != nullptr) {
    r_begin = rows.offsets[bank];
    r_end = rows.offsets[bank + 1];
  }
  const uint4* codes = reinterpret_cast<const uint4*>(stage);
  const uint2* scales = reinterpret_cast<const uint2*>(stage + g.code_bytes);
  for (int c0 = r_begin; c0 < r_end; c0 += 8) {
    const int mc = min(8, r_end - c0);
    // This lane's B column: token c0 + lane/4 (columns 2·(lane%4) + {0, 1, 8, 9} of a k16 step).
    const bf16* xrow = nullptr;
    if (lane / 4 < mc) {
      const int e = c0 + lane / 4;
      const int in_row = rows.entries != nullptr ? rows.entries[e] / rows.in_div : e;
      xrow = x + static_cast<int64_t>(in_row) * x_stride + 2 * (lane % 4);
    }
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int kb = warp; kb < g.kblocks; kb += kSplit) {
      uint32_t b[4][2] = {};
      if (xrow != nullptr) {
#pragma unroll
        for (int st = 0; st < 4; ++st) {
          const uint32_t* p = reinterpret_cast<const uint32_t*>(xrow + kb * 64 + st * 16);
          b[st][0] = __ldg(p);
          b[st][1] = __ldg(p + 4);
        }
      }
      packed::BlockFrag<PackedFormat::kNvfp4> frag;
      frag.codes = codes[kb * 32 + lane];
      frag.scales = scales[kb * 8 + lane / 4];
#pragma unroll
      for (int st = 0; st < 4; ++st) {
        uint32_t a[4];
        frag.Step(st, a);
        packed::Mma(acc, a, b[st][0], b[st][1]);
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) red[warp][j][lane] = acc[j];
    __syncthreads();
    if (threadIdx.x < 64) {  // thread = (column pair j, lane): the warps' partials in order
      const int j = threadIdx.x / 32, ln = threadIdx.x % 32;
      float lo = 0.0f, hi = 0.0f;  // acc[j] (row ln/4) and acc[j + 2] (row ln/4 + 8)
#pragma unroll
      for (int wp = 0; wp < kSplit; ++wp) {
        lo += red[wp][j][ln];
        hi += red[wp][j + 2][ln];
      }
      const int t = 2 * (ln % 4) + j;
      if (t < mc) {
        const int e = c0 + t;
        const int out_row = rows.entries != nullptr ? rows.entries[e] : e;
        packed::StorePair<kEpi>(w, rows, bank, tile, ln / 4, out_row, lo, hi, out, out_stride);
      }
    }
    __syncthreads();  // red is rewritten by the next pass
  }
}

template <GemmEpilogue kEpi>
__global__ void __launch_bounds__(kThreads)
    PackedGemvKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                     void* __restrict__ out, int out_stride) {
  extern __shared__ __align__(16) unsigned char stages[];
  __shared__ float red[kSplit][4][32];
  const ItemGeometry g = Geometry(w);
  // A single matrix (dense MLP) has its items fixed before the PDL wait (launch.cuh): the
  // first stages' weight copies are issued while the previous kernel finishes. A bank's items
  // depend on the router's active list, read after the wait.
  const bool fixed = rows.active == nullptr;
  int first = 0, last = 0;
  auto share = [&](int banks) {
    const int total = banks * g.tiles;
    const int per_block = (total + gridDim.x - 1) / gridDim.x;
    first = blockIdx.x * per_block;
    last = min(total, first + per_block);
  };
  auto prologue = [&] {
    for (int s = 0; s < kStages - 1; ++s) {
      if (first + s < last) IssueItem(w, rows, g, first + s, stages + s * g.stage_bytes);
      CpAsyncCommit();
    }
  };
  if (fixed) {
    share(1);
    prologue();
  }
  GridDependencyWait();
  TriggerDependents();  // the grid is one wave (at most the SMs' resident blocks)
  if (!fixed) {
    share(*rows.active_count);
    prologue();
  }
  if (first >= last) return;
  for (int item = first; item < last; ++item) {
    const int ahead = item + kStages - 1;
    if (ahead < last) IssueItem(w, rows, g, ahead, stages + (ahead - first) % kStages * g.stage_bytes);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();  // item's copies (kStages - 1 groups ago) have landed
    __syncthreads();
    ComputeItem<kEpi>(w, rows, g, item, stages + (item - first) % kStages * g.stage_bytes, x,
                      x_stride, out, out_stride, red);
    __syncthreads();  // every warp is done with the stage before it is refilled
  }
}

template <GemmEpilogue kEpi>
Status Launch(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride, void* out,
              int out_stride, cudaStream_t stream) {
  const int tiles = w.rows / 16, kblocks = w.cols / 64;
  const size_t smem =
      static_cast<size_t>(kStages) * kblocks * (kCodeBytesPerBlock + kScaleBytesPerBlock);
  auto kernel = PackedGemvKernel<kEpi>;
  static const cudaError_t opt_in = [&] {  // once: allow stages beyond the default 48 KB
    int device = 0, max_smem = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) {
      err = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    }
    if (err == cudaSuccess) {
      err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 max_smem - static_cast<int>(sizeof(float) * kSplit * 4 * 32));
    }
    return err;
  }();
  GS_CUDA_RETURN_IF_ERROR(opt_in);
  int per_sm = 0;
  GS_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  if (per_sm < 1) return MakeError("PackedGemvKernel: ", smem, " B of stages do not fit an SM");
  // Enough blocks to fill every SM once, never more than there are items.
  const int items = std::max(rows.max_active, 1) * tiles;
  const int grid = std::min(items, per_sm * DeviceSmCount());
  return LaunchKernel("PackedGemvKernel", kernel, grid, kThreads, smem, stream, w, rows, x,
                      x_stride, out, out_stride);
}

// Small-batch variant (decode): each 16-row tile is split over the k-blocks of kSplit warps, so
// that even a single token keeps many weight loads in flight (each warp streams every kSplit-th
// k-block of its tile, up to kDepth k-blocks loaded before the first is used).
//
// Block (8 warps) = 8/kSplit consecutive 16-row tiles of bank `active[blockIdx.y]`, kSplit warps
// per tile; tokens in chunks of 8·NT (NT mma n-tiles; empty n-tiles of a chunk are skipped). The
// x operand is read straight from global memory (L1-cached: the block's warps read the same x
// rows). With kSplit > 1 the partial accumulators of a tile's warps are summed in shared memory
// in warp order (deterministic); with kSplit = 1 each warp owns whole tiles and stores directly.
// The launcher picks kSplit (ChooseSplit): few banks (batch 1: 8 experts) need a wider split to
// fill the SMs, many banks (batch 32: ~110 experts) are better served by fewer, longer warps per
// tile, which spend less time in the cross-warp reduction and run 4× fewer blocks.
constexpr int kDepth = 6;
constexpr int kWarpsPerBlock = 8;

// One token n-tile fits 64 registers without spills: 4 blocks (32 warps) per SM instead of 3
// keep more weight loads in flight and hide the dequantisation behind them.
// The work of block (bx, by) of the grid described above (a kernel may run several problems in
// one grid: PackedGemvPairKernel).
template <GemmEpilogue kEpi, int NT, int kSplit>
__device__ __forceinline__ void SplitGemvBlock(const PackedMatrix& w, const GemmRows& rows,
                                               const bf16* __restrict__ x, int x_stride,
                                               void* __restrict__ out, int out_stride,
                                               bool one_wave, int bx, int by) {
  constexpr int kTilesPerBlock = kWarpsPerBlock / kSplit;
  __shared__ float red[kSplit > 1 ? kWarpsPerBlock : 1][NT * 4][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int slice = warp % kSplit;  // this warp's share of the tile's k-blocks
  const int tile = bx * kTilesPerBlock + warp / kSplit;
  const bool has_tile = tile < w.rows / 16;
  const int kblocks = w.cols / 64;
  const int64_t tile_kb = static_cast<int64_t>(has_tile ? tile : 0) * kblocks;
  const int my_kbs =
      has_tile && slice < kblocks ? (kblocks - slice + kSplit - 1) / kSplit : 0;
  const uint8_t* code_base = w.codes;
  const uint8_t* scale_base = w.scales;
  // The weights of k-blocks i0 .. i0 + kDepth - 1 of this warp's share.
  packed::BlockFrag<PackedFormat::kNvfp4> frag[kDepth];
  auto load_round = [&](int i0) {
#pragma unroll
    for (int i = 0; i < kDepth; ++i) {
      if (i0 + i < my_kbs) {
        frag[i].Load(code_base, scale_base, tile_kb + slice + (i0 + i) * kSplit, lane);
      }
    }
  };
  // A single matrix (the dense MLP) is a constant: its first weights are loaded before the PDL
  // wait (launch.cuh), while the previous kernel finishes. A bank's id comes from the router, so
  // expert weights are loaded right after reading it, before the token lists — before the wait
  // too when the router ran two kernels back (rows.routing_settled: this kernel starts only once
  // its predecessor has passed its own wait, so the router has completed). Routing tables are read
  // through L2 (__ldcg): the same buffers serve every layer.
  const bool fixed = rows.active == nullptr;
  int bank = 0, r_begin = 0, r_end = rows.m;
  bool idle = false;  // a grid row past the active banks
  auto route = [&] {
    if (rows.one_token_slots) {  // bank active[by] on row by: one load before the weights
      bank = __ldcg(rows.active + by);
      code_base += bank * w.bank_code_bytes;
      scale_base += bank * w.bank_scale_bytes;
      load_round(0);
      r_begin = by;
      r_end = by + 1;
      return;
    }
    if (by >= __ldcg(rows.active_count)) {
      idle = true;
      return;
    }
    bank = __ldcg(rows.active + by);
    code_base += bank * w.bank_code_bytes;
    scale_base += bank * w.bank_scale_bytes;
    load_round(0);
    if (rows.offsets != nullptr) {
      r_begin = __ldcg(rows.offsets + bank);
      r_end = __ldcg(rows.offsets + bank + 1);
    }
  };
  if (fixed) {
    load_round(0);
  } else if (rows.routing_settled) {
    route();
  }
  GridDependencyWait();
  if (one_wave) TriggerDependents();
  if (!fixed && !rows.routing_settled) route();
  if (idle) return;
  const int n_rows = r_end - r_begin;
  if (n_rows <= 0) return;

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
        const int in_row = (rows.entries != nullptr ? rows.entries[e] : e) / rows.in_div;
        xrow[nt] = x + static_cast<int64_t>(in_row) * x_stride + 2 * (lane % 4);
      }
    }
    float acc[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    for (int i0 = 0; i0 < my_kbs; i0 += kDepth) {
      if (i0 > 0 || c0 > 0) load_round(i0);  // the first round was loaded above
#pragma unroll
      for (int i = 0; i < kDepth; ++i) {
        if (i0 + i >= my_kbs) break;
        const int kcol = (slice + (i0 + i) * kSplit) * 64;
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
            if (nt < nt_active) packed::Mma(acc[nt], a, b[nt][st][0], b[nt][st][1]);
          }
        }
      }
    }

    if constexpr (kSplit == 1) {
      if (has_tile) packed::StoreTile<kEpi, NT>(w, rows, bank, tile, r_begin + c0, mc, acc, out,
                                                out_stride);
    } else {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int j = 0; j < 4; ++j) red[warp][nt * 4 + j][lane] = acc[nt][j];
      }
      __syncthreads();
      // Thread = (tile of the block, n-tile, column pair j, lane): sums the tile's warps' partials
      // in order.
      const int per_tile = nt_active * 2 * 32;
      for (int i = threadIdx.x; i < kTilesPerBlock * per_tile; i += blockDim.x) {
        const int tb = i / per_tile, nt = i % per_tile / 64, j = (i / 32) % 2, ln = i % 32;
        const int my_tile = bx * kTilesPerBlock + tb;
        const int t = nt * 8 + 2 * (ln % 4) + j;
        if (my_tile >= w.rows / 16 || t >= mc) continue;
        float lo = 0.0f, hi = 0.0f;  // acc[nt][j] and acc[nt][j + 2]
#pragma unroll
        for (int sl = 0; sl < kSplit; ++sl) {
          lo += red[tb * kSplit + sl][nt * 4 + j][ln];
          hi += red[tb * kSplit + sl][nt * 4 + j + 2][ln];
        }
        const int e = r_begin + c0 + t;
        const int out_row = rows.entries != nullptr ? rows.entries[e] : e;
        packed::StorePair<kEpi>(w, rows, bank, my_tile, ln / 4, out_row, lo, hi, out, out_stride);
      }
      __syncthreads();  // red is rewritten by the next chunk
    }
  }
}

template <GemmEpilogue kEpi, int NT, int kSplit>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, NT == 1 ? 4 : 1)
    PackedGemvSplitKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                          void* __restrict__ out, int out_stride, bool one_wave) {
  SplitGemvBlock<kEpi, NT, kSplit>(w, rows, x, x_stride, out, out_stride, one_wave, blockIdx.x,
                                   blockIdx.y);
}

// Two products in one grid (the decode step's dense MLP and its experts, which then share one
// wave of blocks and one PDL link instead of running on two streams): blocks [0, p0_blocks) are
// problem 0's grid of p0_blocks × 1, the rest problem 1's grid of p1_bx × (its banks), row-major.
struct GemvProblem {
  PackedMatrix w;
  GemmRows rows;
  const bf16* x;
  int x_stride;
  void* out;
  int out_stride;
};

// Each problem has its own warps per tile (kSplit0, kSplit1), so that the blocks of both carry
// about the same bytes (LaunchPackedGemvPair): the grid ends with its slowest block.
template <GemmEpilogue kEpi, int kSplit0, int kSplit1>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 4)
    PackedGemvPairKernel(GemvProblem p0, int p0_blocks, GemvProblem p1, int p1_bx,
                         bool one_wave) {
  const int b = blockIdx.x;
  if (b < p0_blocks) {
    SplitGemvBlock<kEpi, 1, kSplit0>(p0.w, p0.rows, p0.x, p0.x_stride, p0.out, p0.out_stride,
                                     one_wave, b, 0);
  } else {
    const int i = b - p0_blocks;
    SplitGemvBlock<kEpi, 1, kSplit1>(p1.w, p1.rows, p1.x, p1.x_stride, p1.out, p1.out_stride,
                                     one_wave, i % p1_bx, i / p1_bx);
  }
}

template <GemmEpilogue kEpi, int kSplit0, int kSplit1>
Status LaunchPairWith(const GemvProblem& p0, const GemvProblem& p1, cudaStream_t stream) {
  constexpr int kTiles0 = kWarpsPerBlock / kSplit0, kTiles1 = kWarpsPerBlock / kSplit1;
  const int bx0 = (p0.w.rows / 16 + kTiles0 - 1) / kTiles0;
  const int bx1 = (p1.w.rows / 16 + kTiles1 - 1) / kTiles1;
  const int blocks = bx0 + bx1 * std::max(p1.rows.max_active, 1);
  auto kernel = PackedGemvPairKernel<kEpi, kSplit0, kSplit1>;
  static const int resident = ResidentBlocks(kernel, kWarpsPerBlock * 32, 0);
  return LaunchKernel("PackedGemvPairKernel", kernel, blocks, kWarpsPerBlock * 32, 0, stream, p0,
                      bx0, p1, bx1, blocks <= resident);
}

template <GemmEpilogue kEpi, int kSplit1>
Status LaunchPairSplit0(int split0, const GemvProblem& p0, const GemvProblem& p1,
                        cudaStream_t stream) {
  switch (split0) {
    case 1: return LaunchPairWith<kEpi, 1, kSplit1>(p0, p1, stream);
    case 2: return LaunchPairWith<kEpi, 2, kSplit1>(p0, p1, stream);
    case 4: return LaunchPairWith<kEpi, 4, kSplit1>(p0, p1, stream);
    default: return LaunchPairWith<kEpi, 8, kSplit1>(p0, p1, stream);
  }
}

template <GemmEpilogue kEpi>
Status LaunchPair(int split0, int split1, const GemvProblem& p0, const GemvProblem& p1,
                  cudaStream_t stream) {
  switch (split1) {
    case 1: return LaunchPairSplit0<kEpi, 1>(split0, p0, p1, stream);
    case 2: return LaunchPairSplit0<kEpi, 2>(split0, p0, p1, stream);
    case 4: return LaunchPairSplit0<kEpi, 4>(split0, p0, p1, stream);
    default: return LaunchPairSplit0<kEpi, 8>(split0, p0, p1, stream);
  }
}

template <GemmEpilogue kEpi, int NT, int kSplit>
Status LaunchSplitWith(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                       void* out, int out_stride, cudaStream_t stream) {
  constexpr int kTilesPerBlock = kWarpsPerBlock / kSplit;
  const int tiles = w.rows / 16;
  const dim3 grid((tiles + kTilesPerBlock - 1) / kTilesPerBlock, std::max(rows.max_active, 1));
  auto kernel = PackedGemvSplitKernel<kEpi, NT, kSplit>;
  static const int resident = ResidentBlocks(kernel, kWarpsPerBlock * 32, 0);
  const bool one_wave = static_cast<int64_t>(grid.x) * grid.y <= resident;
  return LaunchKernel("PackedGemvSplitKernel", kernel, grid, kWarpsPerBlock * 32, 0, stream, w,
                      rows, x, x_stride, out, out_stride, one_wave);
}

std::atomic<int> g_gemv_split{-1};  // -1: not chosen yet (GS_GEMV_SPLIT on first use)

// Warps per tile, measured on the H100 (docs/benchmarks.md, session 4; GS_GEMV_SPLIT forces one):
// 4 while a split of 2 gives fewer than 4 waves of blocks (decode batches up to ~8: 8-64 experts,
// or the dense MLP at up to 8 tokens), 2 beyond (batch 16 and up). One warp per tile was slower at
// every batch (a 44-k-block chain per warp), 8 slower too (short blocks, each paying the
// routing-table reads). Batch 4: 4 → 902 tok/s, 2 → 867; batch 32: 2 → 3337, 4 → 3033.
int ChooseSplit(const PackedMatrix& w, const GemmRows& rows) {
  if (const int forced = GemvSplit(); forced != 0) return forced;
  if (rows.active == nullptr) return rows.m <= 8 ? 4 : 2;
  // Resident blocks of the one-n-tile kernel with 2 and 4 warps per tile (its epilogues share
  // the register and shared-memory footprint, so one instantiation stands for both).
  static const int resident_2 =
      ResidentBlocks(PackedGemvSplitKernel<GemmEpilogue::kGluBf16, 1, 2>, kWarpsPerBlock * 32, 0);
  static const int resident_4 =
      ResidentBlocks(PackedGemvSplitKernel<GemmEpilogue::kGluBf16, 1, 4>, kWarpsPerBlock * 32, 0);
  static const int wave = std::max(resident_2, DeviceSmCount());
  const int64_t tiles = w.rows / 16, banks = std::max(rows.max_active, 1);
  const int64_t blocks_of_2 = (tiles + kWarpsPerBlock / 2 - 1) / (kWarpsPerBlock / 2) * banks;
  const int64_t blocks_of_4 = (tiles + kWarpsPerBlock / 4 - 1) / (kWarpsPerBlock / 4) * banks;
  // A grid of 4 warps per tile just past one wave (batch 1's down projection: 704 blocks, 528
  // slots) runs a ragged second wave and cannot trigger its dependents early; 2 warps per tile
  // then fit one wave (352 blocks): 7.5 → 6.8 µs per layer on the H100 (docs/benchmarks.md,
  // session 6).
  if (blocks_of_4 > resident_4 && blocks_of_2 <= resident_2) return 2;
  return blocks_of_2 >= int64_t{4} * wave ? 2 : 4;
}

// Token n-tiles per pass: a single matrix (dense MLP) sees every token, so up to 32 tokens go in
// one pass over its weights; an expert sees a few tokens of the step (8 per pass).
template <GemmEpilogue kEpi>
Status LaunchSplit(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                   void* out, int out_stride, cudaStream_t stream) {
  const int split = ChooseSplit(w, rows);
  const bool wide = rows.offsets == nullptr && rows.m > 8;
  auto go = [&](auto nt_tag, auto split_tag) {
    return LaunchSplitWith<kEpi, decltype(nt_tag)::value, decltype(split_tag)::value>(
        w, rows, x, x_stride, out, out_stride, stream);
  };
  using One = std::integral_constant<int, 1>;
  using Four = std::integral_constant<int, 4>;
  switch (split) {
    case 1: return wide ? go(Four{}, One{}) : go(One{}, One{});
    case 2: return wide ? go(Four{}, std::integral_constant<int, 2>{})
                        : go(One{}, std::integral_constant<int, 2>{});
    case 4: return wide ? go(Four{}, std::integral_constant<int, 4>{})
                        : go(One{}, std::integral_constant<int, 4>{});
    default: return wide ? go(Four{}, std::integral_constant<int, 8>{})
                         : go(One{}, std::integral_constant<int, 8>{});
  }
}

}  // namespace

int GemvSplit() {
  int v = g_gemv_split.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("GS_GEMV_SPLIT");
    v = env != nullptr ? std::atoi(env) : 0;
    if (v != 1 && v != 2 && v != 4 && v != 8) v = 0;
    g_gemv_split.store(v, std::memory_order_relaxed);
  }
  return v;
}

void SetGemvSplit(int warps_per_tile) {
  const int v = warps_per_tile;
  g_gemv_split.store(v == 1 || v == 2 || v == 4 || v == 8 ? v : 0, std::memory_order_relaxed);
}

Status LaunchPackedGemvPair(const PackedMatrix& w0, const GemmRows& rows0, const bf16* x0,
                            int x0_stride, void* out0, int out0_stride, const PackedMatrix& w1,
                            const GemmRows& rows1, const bf16* x1, int x1_stride, void* out1,
                            int out1_stride, GemmEpilogue epilogue, cudaStream_t stream) {
  if (w0.format != PackedFormat::kNvfp4 || w1.format != PackedFormat::kNvfp4) {
    return MakeError("LaunchPackedGemvPair: NVFP4 weights only");
  }
  if (rows0.active != nullptr || rows0.offsets != nullptr || rows0.one_token_slots ||
      rows0.m > 8 || rows1.m > 8 || (rows1.active == nullptr && rows1.max_active != 1) ||
      (rows1.one_token_slots && (rows1.offsets != nullptr || rows1.entries != nullptr))) {
    return MakeError("LaunchPackedGemvPair: problem 0 must be one matrix and both at most 8 "
                     "tokens (", rows0.m, ", ", rows1.m, ")");
  }
  const GemvProblem p0{w0, rows0, x0, x0_stride, out0, out0_stride};
  const GemvProblem p1{w1, rows1, x1, x1_stride, out1, out1_stride};
  // Problem 1 (the experts) takes its split as ChooseSplit would for it alone; problem 0 the
  // power of two that gives its warps about as many k-blocks (split1 · K0 / K1, ≤ 8): the dense
  // down projection (K 2112) beside the experts' (K 704) takes 8 warps a tile where they take 2.
  const int split1 = ChooseSplit(w1, rows1);
  int split0 = 1;
  while (split0 < 8 && static_cast<int64_t>(split0) * w1.cols < static_cast<int64_t>(split1) * w0.cols) {
    split0 *= 2;
  }
  return epilogue == GemmEpilogue::kGluBf16
             ? LaunchPair<GemmEpilogue::kGluBf16>(split0, split1, p0, p1, stream)
             : LaunchPair<GemmEpilogue::kStoreF32>(split0, split1, p0, p1, stream);
}

Status LaunchPackedGemv(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                        void* out, int out_stride, GemmEpilogue epilogue, GemvKind kind,
                        cudaStream_t stream) {
  if (w.format != PackedFormat::kNvfp4) return MakeError("LaunchPackedGemv: NVFP4 weights only");
  const bool glu = epilogue == GemmEpilogue::kGluBf16;
  if (kind == GemvKind::kSplitK) {
    return glu ? LaunchSplit<GemmEpilogue::kGluBf16>(w, rows, x, x_stride, out, out_stride, stream)
               : LaunchSplit<GemmEpilogue::kStoreF32>(w, rows, x, x_stride, out, out_stride,
                                                      stream);
  }
  return glu ? Launch<GemmEpilogue::kGluBf16>(w, rows, x, x_stride, out, out_stride, stream)
             : Launch<GemmEpilogue::kStoreF32>(w, rows, x, x_stride, out, out_stride, stream);
}

}  // namespace gs::cuda
