// Decode-size BF16 products out[M, N] fp32 = x[M, K] · W[N, K]ᵀ (attention q/k/v and o, the tied
// lm_head) on the weights exactly as stored for cuBLASLt: row-major [N, K], not repacked. At
// M <= 32 the product is a weight stream (2 bytes per weight, a few FMAs each); cuBLASLt reaches
// 1.5-2.3 TB/s of the H100's ~3 there and, as an ordinary launch, breaks the PDL chain of our
// kernels (launch.cuh). This kernel streams W at bandwidth and starts the stream before the PDL
// wait.
//
// Tensor cores: mma.sync m16n8k16 (bf16 in, fp32 accumulate) with 16 weight rows as A and 8
// tokens as B. A dot product does not care about the order of k, so each lane loads 16
// contiguous bytes per row instead of the fragment's scattered pairs. Lane (g = lane/4,
// t = lane%4) of a 32-column "step" at column c loads W[row g][c + 8t .. +7] and
// W[row g+8][same] (uint4 wa, wb) and x[token g][c + 8t .. +7] (uint4 xv), and feeds two MMAs:
//   MMA 1: a0 = wa.x, a1 = wb.x, a2 = wa.y, a3 = wb.y;   b0 = xv.x, b1 = xv.y
//   MMA 2: a0 = wa.z, a1 = wb.z, a2 = wa.w, a3 = wb.w;   b0 = xv.z, b1 = xv.w
// In the PTX fragment layout a0/a2 are row g at logical k {2t, 2t+1} / {2t+8, 2t+9}, a1/a3 the
// same k of row g+8, and b0/b1 token g at logical k {2t, 2t+1} / {2t+8, 2t+9}. So MMA 1's logical
// k {2t, 2t+1, 2t+8, 2t+9} are the real columns c + 8t + {0, 1, 2, 3} for A and B alike (the
// pairing depends on t only, which A and B lanes share), MMA 2's are c + 8t + {4..7}: over t =
// 0..3 the two MMAs cover the 32 columns once each. The accumulators are the usual C layout:
// c0, c1 = row g × tokens 2t, 2t+1; c2, c3 = row g+8 × the same tokens.
//
// Work split: block = kWarps warps on one 16-row tile, one 64-token chunk (grid z) and one of
// `splits` contiguous ranges of the K steps (grid y). The warps take the steps of the range
// round-robin (warp w: steps w, w + kWarps, …), so at any moment the block reads ~1 KB
// contiguous per row. Each warp keeps kDepth steps of weights in flight in a register ring
// (refilled as each step is consumed); the first kDepth are issued before GridDependencyWait():
// W is a constant, the activations are read only after the wait. x is read through L1 (__ldg:
// the other blocks of the SM read the same columns), one step ahead of its use.
//
// Reductions in a fixed order (bit-identical results run to run): the warps' accumulators are
// summed in warp order through shared memory; with one split that is the output. With several
// (up to 8), a tile's splits form a thread-block cluster and split 0 adds the others' sums from
// their shared memory in split order (ClusterSum). Without clusters (SetBf16GemvClusterSplits),
// each block writes its sum to the workspace and counts itself on the tile's counter
// (__threadfence first); the block that counts last adds the splits' partials in split order,
// stores the output and resets the counter to 0 (RouterDecodeKernel in moe.cu does the same).
// Both give the same bits; the cluster saves the fence, the atomic and a global round trip.
// The splits exist for load balance: N = 2816 (o_proj) is 176 tiles on 132 SMs; with the
// default choice (AutoSplits) the grid fills every resident block slot of the device once.
//
// Rows past N (N not a multiple of 16) load the last row instead (in bounds, never stored); the
// K tail (K % 32 != 0) is zeroed in both operands per lane.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include <cooperative_groups.h>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/packed_fragments.cuh"

namespace gs::cuda {
namespace {

constexpr int kWarps = 4;  // per block: a small block packs many blocks on an SM (balance)
constexpr int kThreads = kWarps * 32;
// Weight steps in flight per warp (1 KB each): 8 for one n-tile (decode batches up to 8, whose
// grids hold only ~4 blocks per SM: the depth, not the occupancy, keeps HBM busy), 4 for more.
template <int NT>
constexpr int kDepth = NT == 1 ? 8 : 4;
constexpr int kStepCols = 32;
constexpr int kMaxTokensPerChunk = 64;  // 8 n-tiles
constexpr int kMaxSplits = 8;
constexpr int kMinStepsPerWarp = 2;  // a split shorter than this costs more than it balances
// Up to 16 tokens the GEMV beats cuBLASLt end to end on the H100; at 32 cuBLASLt's tensor-core
// GEMM wins (decode batch 32: 2849 vs 2945 tok/s, docs/benchmarks.md session 4).
constexpr int kDefaultMaxM = 16;

struct GemvArgs {
  const bf16* x;
  const bf16* w;
  float* out;
  float* partials;  // [chunks][tiles][splits][NT·128], with splits > 1
  int* counters;    // [chunks][tiles], with splits > 1
  int m, n, k;
  bool one_wave;
  bool cluster;  // the splits of a tile form one thread-block cluster (ClusterSum)
};

__device__ __forceinline__ uint4 Zero4() { return make_uint4(0u, 0u, 0u, 0u); }

// Output element `e` of a block's NT·128 sums (the [n-tile][accumulator j][lane] order of the
// MMA accumulators) goes to out[token, row] when both exist.
template <int NT>
__device__ __forceinline__ void StoreSum(const GemvArgs& a, int tile, int chunk, int e, float v) {
  const int nt = e / 128, j = (e / 32) % 4, ln = e % 32;
  const int token = chunk * 8 * NT + nt * 8 + 2 * (ln % 4) + (j & 1);
  const int row = tile * 16 + ln / 4 + 8 * (j >> 1);
  if (token < a.m && row < a.n) a.out[static_cast<int64_t>(token) * a.n + row] = v;
}

// Resident blocks per SM asked of ptxas: the most each instantiation reaches without spilling
// (sm_90a, CUDA 13.0: 96 (depth 8), 76, 113 and 157 registers for NT = 1, 2, 4, 8; one more
// block for NT 4 or 8 spills). More resident blocks: more splits in a one-wave grid, more loads in flight.
template <int NT>
constexpr int kMinBlocks = NT == 1 ? 5 : NT == 2 ? 6 : NT == 4 ? 4 : 3;

// The splits' sums of one (tile, chunk) when they form a thread-block cluster: each block leaves
// its sums in its own shared memory (`mine`), and after a cluster barrier split 0 reads them all
// through distributed shared memory and adds them in split order, exactly as the workspace path
// does (0 + split 0 + split 1 + …, the same bits); a second barrier keeps every block's shared
// memory alive until split 0 has read it. No fence, atomic or global round trip: the cluster
// barrier is the only cross-block synchronisation.
template <int NT>
__device__ __forceinline__ void ClusterSum(const GemvArgs& a, int tile, int chunk, int elems,
                                          float* mine) {
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // release our sums, acquire the other splits'
  if (cluster.block_rank() == 0) {
    const int splits = static_cast<int>(cluster.num_blocks());
    for (int e = threadIdx.x; e < elems; e += kThreads) {
      float sum = 0.0f;
      for (int s = 0; s < splits; ++s) sum += cluster.map_shared_rank(mine, s)[e];
      StoreSum<NT>(a, tile, chunk, e, sum);
    }
  }
  cluster.sync();  // split 0 is done reading: the blocks may exit
}

template <int NT>
__global__ void __launch_bounds__(kThreads, kMinBlocks<NT>) Bf16GemvKernel(GemvArgs a) {
  __shared__ float red[kWarps][NT * 4][32];
  __shared__ float cluster_sums[NT * 128];  // a.cluster: this block's sums
  __shared__ bool last;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int tile = blockIdx.x, split = blockIdx.y, splits = gridDim.y, chunk = blockIdx.z;
  const int steps = (a.k + kStepCols - 1) / kStepCols;
  const int s_begin = static_cast<int>(static_cast<int64_t>(split) * steps / splits);
  const int s_end = static_cast<int>(static_cast<int64_t>(split + 1) * steps / splits);
  const int len = s_end - s_begin;
  const int mine = warp < len ? (len - warp + kWarps - 1) / kWarps : 0;  // this warp's steps
  // This lane's column in the warp's first step; step i is i·kStride columns further.
  constexpr int kStride = kWarps * kStepCols;
  const int col0 = (s_begin + warp) * kStepCols + 8 * t;
  const bf16* w0 = a.w + static_cast<int64_t>(min(tile * 16 + g, a.n - 1)) * a.k + col0;
  const bf16* w1 = a.w + static_cast<int64_t>(min(tile * 16 + g + 8, a.n - 1)) * a.k + col0;
  auto load_w = [&](int i, uint4& lo, uint4& hi) {
    const int off = i * kStride;
    if (col0 + off < a.k) {
      lo = packed::LoadStreaming(reinterpret_cast<const uint4*>(w0 + off));
      hi = packed::LoadStreaming(reinterpret_cast<const uint4*>(w1 + off));
    } else {
      lo = hi = Zero4();
    }
  };

  uint4 wa[kDepth<NT>], wb[kDepth<NT>];
#pragma unroll
  for (int j = 0; j < kDepth<NT>; ++j) {
    if (j < mine) load_w(j, wa[j], wb[j]);
  }
  GridDependencyWait();  // PDL (launch.cuh): x, the workspace and the output from here on
  if (a.one_wave) TriggerDependents();

  const int first_token = chunk * 8 * NT;
  const int nt_active = min(NT, (a.m - first_token + 7) / 8);
  // Token g of n-tile nt is x row first_token + 8·nt + g; rows past M read as zero.
  const bf16* xb = a.x + static_cast<int64_t>(first_token + g) * a.k + col0;
  auto load_x = [&](int i, uint4 (&v)[NT]) {
    const int off = i * kStride;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      v[nt] = nt < nt_active && first_token + 8 * nt + g < a.m && col0 + off < a.k
                  ? __ldg(reinterpret_cast<const uint4*>(xb + 8 * nt * a.k + off))
                  : Zero4();
    }
  };

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
  uint4 xv[NT];
  if (mine > 0) load_x(0, xv);
#pragma unroll 1
  for (int i0 = 0; i0 < mine; i0 += kDepth<NT>) {
#pragma unroll
    for (int j = 0; j < kDepth<NT>; ++j) {
      const int i = i0 + j;
      if (i >= mine) break;
      uint4 xn[NT];  // the next step's x, in flight during this step's MMAs
      if (i + 1 < mine) {
        load_x(i + 1, xn);
      } else {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) xn[nt] = Zero4();
      }
      const uint32_t a1[4] = {wa[j].x, wb[j].x, wa[j].y, wb[j].y};
      const uint32_t a2[4] = {wa[j].z, wb[j].z, wa[j].w, wb[j].w};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (nt < nt_active) {
          packed::Mma(acc[nt], a1, xv[nt].x, xv[nt].y);
          packed::Mma(acc[nt], a2, xv[nt].z, xv[nt].w);
        }
      }
      // Refill the ring slot. After the MMAs that read it (both are asm volatile, so they keep
      // this order): loading first would need a second set of registers and, at the loop's
      // back edge, a copy that waits for the load.
      if (i + kDepth<NT> < mine) load_w(i + kDepth<NT>, wa[j], wb[j]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) xv[nt] = xn[nt];
    }
  }

#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int j = 0; j < 4; ++j) red[warp][nt * 4 + j][lane] = acc[nt][j];
  }
  __syncthreads();
  const int elems = nt_active * 128;
  const int cell = chunk * gridDim.x + tile;  // (chunk, tile): its counter and partials
  float* part =
      splits > 1 ? a.partials + static_cast<int64_t>(cell) * splits * (NT * 128) : nullptr;
  for (int e = threadIdx.x; e < elems; e += kThreads) {
    const int nt = e / 128, j = (e / 32) % 4, ln = e % 32;
    float sum = 0.0f;
#pragma unroll
    for (int wp = 0; wp < kWarps; ++wp) sum += red[wp][nt * 4 + j][ln];
    if (splits == 1) {
      StoreSum<NT>(a, tile, chunk, e, sum);
    } else if (a.cluster) {
      cluster_sums[e] = sum;
    } else {
      __stcg(part + split * (NT * 128) + e, sum);
    }
  }
  if (splits == 1) return;
  if (a.cluster) {
    ClusterSum<NT>(a, tile, chunk, elems, cluster_sums);
    return;
  }
  __threadfence();  // this block's partials are visible device-wide before it counts
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.counters + cell, 1) == splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // acquire side: the partials of the blocks counted before us are visible
  for (int e = threadIdx.x; e < elems; e += kThreads) {
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += __ldcg(part + s * (NT * 128) + e);
    StoreSum<NT>(a, tile, chunk, e, sum);
  }
  if (threadIdx.x == 0) a.counters[cell] = 0;  // every split has counted: ready for the next launch
}

// n-tiles (8 tokens each) per chunk: the fewest that hold M tokens, at most 8.
int NtFor(int m) { return m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8; }

template <int NT>
int Resident() {
  static const int resident = ResidentBlocks(Bf16GemvKernel<NT>, kThreads, 0);
  return resident;
}

int ResidentFor(int nt) {
  switch (nt) {
    case 1: return Resident<1>();
    case 2: return Resident<2>();
    case 4: return Resident<4>();
    default: return Resident<8>();
  }
}

struct Shape {
  int nt, tiles, chunks, steps;
  int64_t cells() const { return static_cast<int64_t>(tiles) * chunks; }
  size_t partial_bytes(int splits) const {
    return static_cast<size_t>(cells()) * splits * nt * 128 * sizeof(float);
  }
};

Shape ShapeOf(int m, int n, int k) {
  Shape s;
  s.nt = NtFor(m);
  s.tiles = (n + 15) / 16;
  s.chunks = std::max(1, (m + kMaxTokensPerChunk - 1) / kMaxTokensPerChunk);
  s.steps = (k + kStepCols - 1) / kStepCols;
  return s;
}

bool WorkspaceHolds(const Shape& s, int splits, const Bf16GemvWorkspace& ws) {
  return ws.partials != nullptr && ws.counters != nullptr && s.cells() <= ws.num_counters &&
         s.partial_bytes(splits) <= ws.partial_bytes;
}

// Fraction of the resident block slots that `blocks` equal blocks keep busy over their waves.
double WaveFill(int64_t blocks, int resident) {
  const int64_t waves = (blocks + resident - 1) / resident;
  return static_cast<double>(blocks) / static_cast<double>(waves * resident);
}

// Blocks per tile along K. A grid that fits the device's resident block slots (one wave, which
// may trigger its dependents early) gets as many splits as still fit one wave: every SM then
// streams, and equal blocks that start together finish together. A grid of a few waves would
// end on a ragged last wave of big blocks with too few loads in flight (N = 9216 at 4 blocks per
// SM: 576 tiles, 528 slots): it gets the fewest splits whose waves are >= 85% full (or the
// fullest), smaller blocks and a shorter ragged end. From 4 waves on the grid stays unsplit
// (the lm_head). Bounded by kMaxSplits, kMinStepsPerWarp and the workspace.
int AutoSplits(const Shape& s, const Bf16GemvWorkspace& ws) {
  const int resident = ResidentFor(s.nt);
  const int max_splits = std::min(kMaxSplits, s.steps / (kWarps * kMinStepsPerWarp));
  if (resident <= 0 || s.cells() >= 4LL * resident) return 1;
  if (s.cells() <= resident) {
    int splits = 1;
    while (splits < max_splits && s.cells() * (splits + 1) <= resident &&
           WorkspaceHolds(s, splits + 1, ws)) {
      ++splits;
    }
    return splits;
  }
  int best = 1;
  double best_fill = WaveFill(s.cells(), resident);
  for (int splits = 2; splits <= max_splits && best_fill < 0.85; ++splits) {
    if (!WorkspaceHolds(s, splits, ws)) break;
    const double fill = WaveFill(s.cells() * splits, resident);
    if (fill > best_fill) {
      best = splits;
      best_fill = fill;
    }
  }
  return best;
}

// The most splits one cluster holds (the portable cluster size).
constexpr int kMaxClusterSplits = 8;

// Whether the splits of a tile meet in a cluster (SetBf16GemvClusterSplits): GS_GEMV_CLUSTER=0
// (read once) starts it off, for A/B measurement; both paths give the same bits.
std::atomic<bool>& ClusterSplitsSwitch() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("GS_GEMV_CLUSTER");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }()};
  return on;
}
bool ClusterSplits() { return ClusterSplitsSwitch().load(std::memory_order_relaxed); }

template <int NT>
Status LaunchNt(const GemvArgs& args, const Shape& s, int splits, cudaStream_t stream) {
  const dim3 grid(s.tiles, splits, s.chunks);
  GemvArgs a = args;
  a.one_wave = static_cast<int64_t>(s.tiles) * splits * s.chunks <= Resident<NT>();
  a.cluster = splits > 1 && splits <= kMaxClusterSplits && ClusterSplits();
  return LaunchClusterKernel("Bf16GemvKernel", Bf16GemvKernel<NT>, grid,
                             dim3(1, a.cluster ? splits : 1, 1), kThreads, 0, stream, a);
}

// Largest M served by Bf16Gemm::Run; 0 = off. From the environment once, then the setter's.
std::atomic<int>& MaxM() {
  static std::atomic<int> max_m{[] {
    const char* on = std::getenv("GS_BF16_GEMV");
    if (on != nullptr && std::strcmp(on, "0") == 0) return 0;
    const char* limit = std::getenv("GS_BF16_GEMV_MAX_M");
    return limit != nullptr ? std::max(0, std::atoi(limit)) : kDefaultMaxM;
  }()};
  return max_m;
}

// GS_BF16_GEMV_SPLITS=<n> (read once): every launch without an explicit `splits` uses n splits
// instead of AutoSplits' choice; a tuning switch (unset or 0: automatic).
int EnvSplits() {
  static const int splits = [] {
    const char* env = std::getenv("GS_BF16_GEMV_SPLITS");
    return env != nullptr ? std::max(0, std::atoi(env)) : 0;
  }();
  return splits;
}

// EnvSplits() when set (fewer when the workspace cannot hold them), else AutoSplits().
int ChosenSplits(const Shape& s, const Bf16GemvWorkspace& ws) {
  if (EnvSplits() <= 0) return AutoSplits(s, ws);
  int splits = std::min(EnvSplits(), s.steps);
  while (splits > 1 && !WorkspaceHolds(s, splits, ws)) --splits;
  return splits;
}

}  // namespace

void SetBf16GemvClusterSplits(bool on) {
  ClusterSplitsSwitch().store(on, std::memory_order_relaxed);
}

int Bf16GemvSplits(int m, int n, int k, const Bf16GemvWorkspace& ws) {
  if (m <= 0 || n <= 0 || k <= 0) return 1;
  return ChosenSplits(ShapeOf(m, n, k), ws);
}

Status LaunchBf16Gemv(const bf16* x, int m, int k, const bf16* w, int n, float* out,
                      const Bf16GemvWorkspace& ws, cudaStream_t stream, int splits) {
  if (n <= 0 || k <= 0 || k % 8 != 0 || m < 0) {
    return MakeError("LaunchBf16Gemv: unsupported shape M=", m, " N=", n, " K=", k,
                     " (needs M >= 0, N >= 1 and K a positive multiple of 8)");
  }
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0) {
    return MakeError("LaunchBf16Gemv: x and W must be 16-byte aligned (M=", m, " N=", n,
                     " K=", k, ")");
  }
  if (m == 0) return Ok();
  const Shape s = ShapeOf(m, n, k);
  if (splits <= 0) {
    splits = ChosenSplits(s, ws);
  } else {
    splits = std::min(splits, s.steps);
    if (splits > 1 && !WorkspaceHolds(s, splits, ws)) {
      return MakeError("LaunchBf16Gemv: the workspace (", ws.partial_bytes, " B, ",
                       ws.num_counters, " counters) cannot hold ", splits, " splits of M=", m,
                       " N=", n, " K=", k);
    }
  }
  GemvArgs a{x, w, out, ws.partials, ws.counters, m, n, k, false, false};
  switch (s.nt) {
    case 1: return LaunchNt<1>(a, s, splits, stream);
    case 2: return LaunchNt<2>(a, s, splits, stream);
    case 4: return LaunchNt<4>(a, s, splits, stream);
    default: return LaunchNt<8>(a, s, splits, stream);
  }
}

bool Bf16GemvServes(int m, int n, int k) {
  return m >= 1 && m <= MaxM().load(std::memory_order_relaxed) && n >= 1 && k >= 8 && k % 8 == 0;
}

void SetBf16GemvPolicy(bool enabled, int max_m) {
  MaxM().store(enabled ? std::max(0, max_m) : 0, std::memory_order_relaxed);
}

}  // namespace gs::cuda
