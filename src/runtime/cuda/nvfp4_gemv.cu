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

// Small-batch variant (decode): split-K across the warps of a block, so that even a single
// token keeps many weight loads in flight (each warp streams every kSplit-th k-block of the same
// 16-row tile, up to kDepth k-blocks loaded before the first is used).
//
// Block (kSplit warps) = one 16-row tile of bank `active[blockIdx.y]`; tokens in chunks of
// 8·NT (NT mma n-tiles; empty n-tiles of a chunk are skipped). The x operand is read straight
// from global memory (L1-cached: the block's warps read each x row once between them). The
// partial accumulators of the warps are summed in shared memory in warp order (deterministic),
// then the epilogue of PackedGemmKernel is applied.
constexpr int kDepth = 6;

template <GemmEpilogue kEpi, int NT>
__global__ void __launch_bounds__(kSplit * 32)
    PackedGemvSplitKernel(PackedMatrix w, GemmRows rows, const bf16* __restrict__ x, int x_stride,
                          void* __restrict__ out, int out_stride, bool one_wave) {
  __shared__ float red[kSplit][NT * 4][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tile = blockIdx.x, kblocks = w.cols / 64;
  const int64_t tile_kb = static_cast<int64_t>(tile) * kblocks;
  const int my_kbs = warp < kblocks ? (kblocks - warp + kSplit - 1) / kSplit : 0;
  // The weights could be loaded before the PDL wait (launch.cuh) only for a single matrix (a
  // bank's id comes from the router): tried for the dense MLP, it cost registers and made the
  // expert kernels slower (H100, batch 32) while the dense products run on a side stream anyway.
  GridDependencyWait();
  if (one_wave) TriggerDependents();

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
      packed::BlockFrag<PackedFormat::kNvfp4> frag[kDepth];
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
            if (nt < nt_active) packed::Mma(acc[nt], a, b[nt][st][0], b[nt][st][1]);
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
      packed::StorePair<kEpi>(w, rows, bank, tile, ln / 4, out_row, lo, hi, out, out_stride);
    }
    __syncthreads();  // red is rewritten by the next chunk
  }
}

template <GemmEpilogue kEpi>
Status LaunchSplit(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                   void* out, int out_stride, cudaStream_t stream) {
  const dim3 grid(w.rows / 16, std::max(rows.max_active, 1));
  auto kernel = PackedGemvSplitKernel<kEpi, 1>;
  static const int resident = ResidentBlocks(kernel, kSplit * 32, 0);
  const bool one_wave = static_cast<int64_t>(grid.x) * grid.y <= resident;
  return LaunchKernel("PackedGemvSplitKernel", kernel, grid, kSplit * 32, 0, stream, w, rows, x,
                      x_stride, out, out_stride, one_wave);
}


}  // namespace

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
