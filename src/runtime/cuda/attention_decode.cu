// Decode attention on tensor cores: a query tile has at most 8 rows (tokens × the q heads of one
// kv head: GQA group 2 → 4 tokens, group 8 → 1), so the products run transposed, with the keys
// and head dims as the mma's 16-row side and the ≤ 8 query rows as its 8-column side:
//   Sᵀ (16 keys × 8 rows) = K·Qᵀ,   Oᵀ (16 dims × 8 rows) += Vᵀ·Pᵀ_hi + Vᵀ·Pᵀ_lo
// (P split into two bf16 terms, see SplitBf16x2).
//
// A block (4 warps) walks 64-key smem tiles. For Sᵀ each warp takes 16 keys of the tile (over
// all head dims, in 4 independent mma chains so the chain latency does not serialise); for Oᵀ
// each warp takes a quarter of the head dims over all 64 keys. The softmax state (m, l) is
// therefore the block's, not the warp's: the warps exchange their tile maxima and P through
// smem, every warp rescales by the same factor, and at the end no cross-warp merge of O is
// needed (each warp owns distinct dims; head_dim 512 needs 32 accumulators a thread, not 128).
//
// Long contexts split over blocks (flash-decoding, gridDim.z). The grid's split count is fixed
// per batch shape (graphs replay at any context); each (tile, kv head) uses n = min(gridDim.z,
// its key tiles) of them and the rest exit at once. Each used split writes its unnormalised O and
// (m, l) to `partial` in the mma fragment layout, counts itself in its (tile, kv head) counter,
// and the block that counts last merges all n records in split order — so the result does not
// depend on which block finished last — and resets the counter for the next launch (or graph
// replay). Loads of the merge are 16-byte, coalesced, in flight together, and skip unused rows.
//
// The fused form (kFused, decode steps: one new token per sequence, so a tile is one token and
// its only fresh key is that token) reads the fp32 q/k/v projection instead of bf16 q/k/v: each
// block normalises and rotates the q rows of its tile and the k/v row of its kv head itself
// (qkv_norm_rope.cuh, bit for bit QkvNormRopeKernel), one warp per row, keeps the k/v rows in
// smem (the tile loader copies them from there) and, in split 0 only, appends them to the cache
// as AppendToCache (norm_rope.cu) does. No block reads the row being written: cache keys are
// positions before the sequence's new token, whose own row (a ring slot holds p − window, outside
// the window) is never among them.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "runtime/cuda/attention_common.cuh"
#include "runtime/cuda/attention_internal.h"
#include "runtime/cuda/kv_store.cuh"
#include "runtime/cuda/launch.cuh"
#include "runtime/cuda/qkv_norm_rope.cuh"

namespace gs::cuda {
namespace {

using namespace attn;

constexpr int kR = 8;        // query rows per tile
constexpr int kN = 64;       // keys per smem tile
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kPStride = kN + 8;  // fp32 P row: conflict-free B-fragment reads (8·r mod 32)
static_assert(kN == 16 * kWarps, "each warp scores 16 keys of a tile");

template <int D>
struct DecodeShape {
  static_assert(D % 32 == 0 && D <= 512, "head_dim must be a multiple of 32, at most 512");
  static constexpr int kStride = D + kPad;
  static constexpr int kKSteps = D / 16;                     // k-steps of Sᵀ = K·Qᵀ
  static constexpr int kPvWarps = D >= 64 ? kWarps : D / 16;  // warps that own Oᵀ dims
  static constexpr int kMt = D / 16 / kPvWarps;              // 16-dim m-tiles of Oᵀ per warp
  static constexpr int kDimsPerWarp = 16 * kMt;
  // One split's partial record: O in fragment order [warp][m-tile][lane][4], then m[8], l[8].
  static constexpr int kRecord = kR * D + 2 * kR;
  // Fused: the block's own k and v rows of its token, [2][D + pad] bf16, after the rest.
  static constexpr size_t SmemBytes(bool fp8, bool fused) {
    return sizeof(bf16) * (kR + 2 * kN) * kStride +
           sizeof(float) * (kR * kPStride + 2 * kWarps * kR) +  // P, per-warp maxima and sums
           (fp8 ? 2 * kN * sizeof(float) : 0) +  // the keys' scales (codes: in the tile rows)
           (fused ? sizeof(bf16) * 2 * kStride : 0);
  }
  // Blocks an SM holds by shared memory (228 KB, 1 KB reserved a block), ≤ 4: the register
  // bound ptxas may use so that registers never cut that occupancy (without a bound it keeps
  // head_dim 512 at 168 registers and spills).
  static constexpr int MinBlocks(bool fp8, bool fused) {
    const size_t by_smem = 228 * 1024 / (SmemBytes(fp8, fused) + 1024);
    return by_smem < 1 ? 1 : by_smem > 4 ? 4 : static_cast<int>(by_smem);
  }
};

// Copies K or V rows of one 64-key tile into smem as bf16. Groups of (up to) 8 lanes copy one
// key row, 16 bytes a lane per step (128 contiguous bytes a group: coalesced), so a thread
// touches only kKeys = 4 keys; their cache rows (ring slot or block-table lookup) are computed
// once per tile by Rows(), ahead of time, and serve both K and V. Keys past the tile's last key
// become zeros (masked probabilities 0 never meet stale values). bf16 rows go straight to the
// tile; an e4m3 row (D bytes) lands in the last D bytes of its own bf16 row (StageRow: 2·D + 16
// bytes with the padding) and Finish() expands it in place — the row's lanes, all of one warp,
// read their codes before any of them writes (a __syncwarp between), and each thread converts
// exactly the chunks it copied, so no block barrier sits between the copy and the expansion. An
// FP8 tile then needs no staging buffer beside the bf16 one: the kernel's shared memory (and its
// blocks per SM) are the BF16 kernel's, plus the keys' scales. With fp8, `scales`
// receives each key's stored scale (1 for fresh keys, 0 past the last key). kFused: the one
// fresh key's row is the block's own smem copy (`fresh` then points at it), copied synchronously.
template <int D, bool kFp8, bool kFused>
struct DecodeKvLoader {
  static constexpr int kChunks = D / 8;  // 8 elements (16 B bf16, 8 B e4m3) per copy
  static constexpr int kLanesPerRow = kChunks < 8 ? kChunks : 8;
  static constexpr int kRowGroups = kThreads / kLanesPerRow;
  static constexpr int kKeys = kN / kRowGroups;
  static constexpr int kChunksPerLane = kChunks / kLanesPerRow;
  static_assert(kN % kRowGroups == 0, "tile does not divide the threads");
  static constexpr int kStride = D + kPad;

  __device__ __forceinline__ static int Key(int i) {
    return static_cast<int>(threadIdx.x) / kLanesPerRow + i * kRowGroups;
  }

  // Where key row j's e4m3 codes wait for Finish(): the last D bytes of its bf16 row.
  static constexpr int kStageOffset = static_cast<int>(sizeof(bf16)) * kStride - D;
  static_assert(kStageOffset % 8 == 0, "8-byte copies of the codes need 8-byte alignment");
  __device__ __forceinline__ static uint8_t* StageRow(bf16* tile, int j) {
    return reinterpret_cast<uint8_t*>(tile + j * kStride) + kStageOffset;
  }

  // The cache row (or, for keys of the chunk, the row of k/v) of this thread's keys of the tile
  // at k0. Only loads: nothing waits on them until Issue().
  __device__ __forceinline__ static void Rows(const AttentionLayer& L, const AttentionMeta& m,
                                              const TileInfo& t, int k0, int (&row)[kKeys]) {
#pragma unroll
    for (int i = 0; i < kKeys; ++i) {
      const int p = min(k0 + Key(i), t.kend);  // past kend: any valid row (it is not read)
      row[i] = p >= t.start ? t.first + p - t.start : static_cast<int>(CacheRow(L, m, t, p));
    }
  }

  // Which keys of the tile Issue() fills: all of them, or (kFused, the first tile) the cache keys
  // and the zeros past the last key before the PDL wait, then the fresh key after the prologue.
  enum class Part { kAll, kCache, kFresh };

  template <Part kPart = Part::kAll>
  __device__ __forceinline__ static void Issue(const bf16* fresh, const void* cache,
                                               const float* cache_scale, int kv_heads, int g,
                                               const TileInfo& t, int k0, const int (&row)[kKeys],
                                               bf16* tile, float* scales) {
    const int lane_in_row = static_cast<int>(threadIdx.x) % kLanesPerRow;
#pragma unroll
    for (int i = 0; i < kKeys; ++i) {
      const int j = Key(i), p = k0 + j;
      const bool is_fresh = p >= t.start && p <= t.kend;
      if (kPart == Part::kCache && is_fresh) continue;
      if (kPart == Part::kFresh && !is_fresh) continue;
      const int64_t base = (static_cast<int64_t>(row[i]) * kv_heads + g) * D;
#pragma unroll
      for (int cc = 0; cc < kChunksPerLane; ++cc) {
        const int c = (lane_in_row + cc * kLanesPerRow) * 8;
        bf16* dst = tile + j * kStride + c;
        if (p > t.kend) {
          *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
        } else if (p >= t.start) {
          if constexpr (kFused) {
            *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(fresh + c);
          } else {
            CpAsync16(dst, fresh + base + c);
          }
        } else if constexpr (kFp8) {
          CpAsync8(StageRow(tile, j) + c, static_cast<const uint8_t*>(cache) + base + c);
        } else {
          CpAsync16(dst, static_cast<const bf16*>(cache) + base + c);
        }
      }
      if constexpr (kFp8) {
        if (lane_in_row == 0) {
          if (p > t.kend) {
            scales[j] = 0.0f;
          } else if (p >= t.start) {
            scales[j] = 1.0f;
          } else {
            CpAsync4(scales + j, cache_scale + static_cast<int64_t>(row[i]) * kv_heads + g);
          }
        }
      }
    }
    if constexpr (kPart != Part::kFresh) CpAsyncCommit();
  }

  // After the wait for this tile's group: expands this thread's e4m3 chunks (cache keys,
  // p < t.start) in place; a barrier must follow before other threads read the tile. All lanes
  // of the warp call it (the __syncwarp between a row's reads and writes).
  __device__ __forceinline__ static void Finish(bf16* tile, const TileInfo& t, int k0) {
    if constexpr (kFp8) {
      const int lane_in_row = static_cast<int>(threadIdx.x) % kLanesPerRow;
#pragma unroll
      for (int i = 0; i < kKeys; ++i) {
        const int j = Key(i);
        const bool cached = k0 + j < t.start;
        uint2 codes[kChunksPerLane];
#pragma unroll
        for (int cc = 0; cc < kChunksPerLane; ++cc) {
          const int c = (lane_in_row + cc * kLanesPerRow) * 8;
          if (cached) codes[cc] = *reinterpret_cast<const uint2*>(StageRow(tile, j) + c);
        }
        // The row's codes are read before any of its lanes overwrites them. (Each row belongs to
        // one 8-lane group and one i: rows never share bytes, so no barrier is needed between i.)
        __syncwarp();
#pragma unroll
        for (int cc = 0; cc < kChunksPerLane; ++cc) {
          const int c = (lane_in_row + cc * kLanesPerRow) * 8;
          if (cached) {
            *reinterpret_cast<uint4*>(tile + j * kStride + c) = ExpandE4m3x8ToScaledBf16(codes[cc]);
          }
        }
      }
    }
  }
};


// The fused prologue's per-lane constants: lane L owns the rotation pairs (i, i + D/2) of
// i = L + 32j (QkvNormRopeKernel's threads L + 32j), and holds their norm weights and
// frequencies, loaded before the PDL wait (weights are constants).
template <int D>
struct FusedConsts {
  static constexpr int kHalf = D / 2, kPairs = (kHalf + 31) / 32;
  float qw[2][kPairs], kw[2][kPairs], freq[kPairs];

  __device__ __forceinline__ void Load(const QkvNormRopeSource& src, int lane) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int i = min(lane + 32 * j, kHalf - 1);  // lanes past D/2 (D = 32) store nothing
      qw[0][j] = src.q_norm != nullptr ? src.q_norm[i] : 0.0f;
      qw[1][j] = src.q_norm != nullptr ? src.q_norm[i + kHalf] : 0.0f;
      kw[0][j] = src.k_norm != nullptr ? src.k_norm[i] : 0.0f;
      kw[1][j] = src.k_norm != nullptr ? src.k_norm[i + kHalf] : 0.0f;
      freq[j] = src.inv_freq[i];
    }
  }
};

// One warp turns the raw fp32 row x of a head (its pairs already in x1, x2: lane L holds pairs
// L + 32j) into its bf16 row dst exactly as QkvNormRopeKernel does (qkv_norm_rope.cuh: that
// kernel's block of B = NormThreads(D) threads is replayed as B / 32 virtual warps). Returns the
// largest |bf16 value| of the lane's elements.
template <int D>
__device__ __forceinline__ float NormRopeRowWarp(const float* __restrict__ x,
                                                 const float (&x1)[FusedConsts<D>::kPairs],
                                                 const float (&x2)[FusedConsts<D>::kPairs],
                                                 bool weighted,
                                                 const float (&w)[2][FusedConsts<D>::kPairs],
                                                 bool rope, const FusedConsts<D>& fc,
                                                 const float (&sn)[FusedConsts<D>::kPairs],
                                                 const float (&cs)[FusedConsts<D>::kPairs],
                                                 float eps, bf16* dst, int lane) {
  constexpr int kHalf = D / 2, kPairs = FusedConsts<D>::kPairs;
  constexpr int kB = qkv::NormThreads(D), kVirtualWarps = kB / 32;
  float total = 0.0f;
  if constexpr (kB == kHalf) {  // virtual thread L + 32j sums exactly pair j of lane L
#pragma unroll
    for (int j = 0; j < kVirtualWarps; ++j) {
      total = __fadd_rn(total, qkv::ButterflySum(qkv::AddSquare(qkv::AddSquare(0.0f, x1[j]), x2[j])));
    }
  } else {
#pragma unroll
    for (int vw = 0; vw < kVirtualWarps; ++vw) {
      float ss = 0.0f;
      for (int i = vw * 32 + lane; i < D; i += kB) ss = qkv::AddSquare(ss, x[i]);
      total = __fadd_rn(total, qkv::ButterflySum(ss));
    }
  }
  const float inv = qkv::InvRms(total, D, eps);
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
    const int i = lane + 32 * j;
    if (i >= kHalf) continue;
    const float2 y = qkv::NormRopePair(x1[j], x2[j], inv, weighted, w[0][j], w[1][j],
                                       rope && fc.freq[j] != 0.0f, sn[j], cs[j]);
    const bf16 b1 = __float2bfloat16_rn(y.x), b2 = __float2bfloat16_rn(y.y);
    dst[i] = b1;
    dst[i + kHalf] = b2;
    amax = fmaxf(amax, fmaxf(fabsf(__bfloat162float(b1)), fabsf(__bfloat162float(b2))));
  }
  return amax;
}

// One warp appends the bf16 row `row` (smem, written by this warp) as kv head g of K or V to
// cache row `write_row`: the bytes and FP8 scale of AppendToCache (norm_rope.cu) — RowScale of
// the row's amax (a max: any order), 1 / s and QuantizeE4m3x8. (AppendToCache's ring skip never
// applies here: a decode tile is one new token, the newest position of its sequence.)
template <int D, bool kFp8>
__device__ __forceinline__ void AppendRowWarp(const AttentionLayer& L, int64_t write_row, int g,
                                              bool is_v, const bf16* row, float lane_amax,
                                              int lane) {
  const int64_t at = (write_row * L.kv_heads + g) * D;
  __syncwarp();  // the row's elements were stored by other lanes of the warp
  if constexpr (!kFp8) {
    bf16* cache = static_cast<bf16*>(is_v ? L.v_cache : L.k_cache) + at;
    for (int c = lane * 8; c < D; c += 32 * 8) {
      *reinterpret_cast<uint4*>(cache + c) = *reinterpret_cast<const uint4*>(row + c);
    }
  } else {
    float amax = lane_amax;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float scale = fp8kv::RowScale(amax), inv = 1.0f / scale;
    uint8_t* cache = static_cast<uint8_t*>(is_v ? L.v_cache : L.k_cache) + at;
    for (int c = lane * 8; c < D; c += 32 * 8) {
      *reinterpret_cast<uint2*>(cache + c) =
          kv::QuantizeE4m3x8(*reinterpret_cast<const uint4*>(row + c), inv);
    }
    if (lane == 0) (is_v ? L.v_scale : L.k_scale)[at / D] = fp8kv::StoredScale(scale);
  }
}

// The fused prologue of block (tile t, kv head g, split z): q rows of t's token for g's heads →
// qs (rows [0, group)), its k and v rows → fk, fv; split 0 appends k and v to the cache row
// `write_row` (found before the PDL wait from the tile's metadata). Rows
// [q_0 … q_{group−1}, k, v] go to the warps round robin; a warp loads all of its rows before it
// computes any (one round of L2 latency), and the RoPE angles, the same for every row of the
// token, are computed once. `after_loads()` runs while those loads are in flight.
template <int D, bool kFp8, typename AfterLoads>
__device__ __forceinline__ void FusedPrologue(const QkvNormRopeSource& src,
                                              const FusedConsts<D>& fc, const AttentionLayer& L,
                                              int64_t write_row, const TileInfo& t, int g,
                                              int group, bool append, bf16* qs, bf16* fk,
                                              bf16* fv, AfterLoads&& after_loads) {
  constexpr int kStride = D + kPad, kHalf = D / 2, kPairs = FusedConsts<D>::kPairs;
  constexpr int kMaxRows = (kR + 2 + kWarps - 1) / kWarps;  // rows a warp takes, at most
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tok = t.tok0, n_rows = group + 2;
  const int64_t row_len = static_cast<int64_t>(L.heads + (src.k_eq_v ? 1 : 2) * L.kv_heads) * D;
  const float* x = src.qkv + tok * row_len;
  auto head_col = [&](int r) {  // the row's head in the projection's columns
    return r < group ? g * group + r
                     : (r == group ? L.heads + g : L.heads + (src.k_eq_v ? 0 : L.kv_heads) + g);
  };
  float x1[kMaxRows][kPairs], x2[kMaxRows][kPairs];
#pragma unroll
  for (int m = 0; m < kMaxRows; ++m) {
    const int r = warp + kWarps * m;
    const float* xr = x + static_cast<int64_t>(head_col(min(r, n_rows - 1))) * D;
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int i = lane + 32 * j;
      const bool ok = r < n_rows && i < kHalf;
      x1[m][j] = ok ? xr[i] : 0.0f;
      x2[m][j] = ok ? xr[i + kHalf] : 0.0f;
    }
  }
  after_loads();
  const int pos = t.pos0;  // the token's position (a decode tile is one token)
  float sn[kPairs], cs[kPairs];
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
    sn[j] = 0.0f;
    cs[j] = 1.0f;
    if (fc.freq[j] != 0.0f) qkv::RopeSinCos(pos, fc.freq[j], &sn[j], &cs[j]);
  }
#pragma unroll
  for (int m = 0; m < kMaxRows; ++m) {
    const int r = warp + kWarps * m;
    if (r >= n_rows) break;
    const float* xr = x + static_cast<int64_t>(head_col(r)) * D;
    if (r < group) {
      NormRopeRowWarp<D>(xr, x1[m], x2[m], src.q_norm != nullptr, fc.qw, true, fc, sn, cs,
                         src.eps, qs + r * kStride, lane);
    } else if (r == group) {
      const float amax = NormRopeRowWarp<D>(xr, x1[m], x2[m], src.k_norm != nullptr, fc.kw, true,
                                            fc, sn, cs, src.eps, fk, lane);
      if (append) AppendRowWarp<D, kFp8>(L, write_row, g, false, fk, amax, lane);
    } else {
      const float amax = NormRopeRowWarp<D>(xr, x1[m], x2[m], false, fc.kw, false, fc, sn, cs,
                                            src.eps, fv, lane);
      if (append) AppendRowWarp<D, kFp8>(L, write_row, g, true, fv, amax, lane);
    }
  }
}

template <int D, bool kFp8, bool kFused>
__global__ void __launch_bounds__(kThreads, DecodeShape<D>::MinBlocks(kFp8, kFused))
    DecodeAttentionKernel(AttentionLayer L, AttentionMeta meta, const bf16* __restrict__ q,
                          const bf16* __restrict__ k_new, const bf16* __restrict__ v_new,
                          QkvNormRopeSource src, float* __restrict__ partial,
                          int* __restrict__ counters, bf16* __restrict__ out, bool one_wave) {
  using Shape = DecodeShape<D>;
  using Loader = DecodeKvLoader<D, kFp8, kFused>;
  constexpr int kStride = Shape::kStride, kMt = Shape::kMt, kKSteps = Shape::kKSteps;
  constexpr int kChains = kKSteps < 4 ? kKSteps : 4;  // independent mma chains of Sᵀ

  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);  // [kR][D + pad]
  bf16* ks = qs + kR * kStride;                   // [kN][D + pad]
  bf16* vs = ks + kN * kStride;                   // [kN][D + pad]
  float* ps = reinterpret_cast<float*>(vs + kN * kStride);  // [kR][kPStride]: P of the tile
  float* wm = ps + kR * kPStride;                            // [warps][kR]: tile maxima
  float* wl = wm + kWarps * kR;                              // [warps][kR]: row sums
  float* k_sc = wl + kWarps * kR;  // fp8: [kN] (the codes wait inside the tiles' rows)
  float* v_sc = k_sc + kN;
  // Fused: this block's k and v rows of its token, after everything else.
  bf16* fk = reinterpret_cast<bf16*>(smem_raw + Shape::SmemBytes(kFp8, false));
  bf16* fv = fk + kStride;
  __shared__ int last_block;

  const int g = blockIdx.y, group = L.heads / L.kv_heads, z = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  // This (tile, kv head)'s splits: n of them, as even as whole key tiles allow; the grid's
  // other splits have nothing to do (no record, no count).
  TileInfo t;
  int n = 0, tile_begin = 0, tile_end = 0;
  auto geometry = [&] {
    t = GetTile(meta, blockIdx.x, L.window);
    const int n_tiles = (t.kend - t.kbeg + kN) / kN;
    n = min(static_cast<int>(gridDim.z), n_tiles);
    tile_begin = z * n_tiles / max(n, 1);
    tile_end = (z + 1) * n_tiles / max(n, 1);
  };
  int row[Loader::kKeys];
  FusedConsts<D> fc;
  int64_t write_row = 0;  // kFused, split 0: the cache row of the token's k and v
  if constexpr (kFused) {
    // Decode steps read before the PDL wait only what no kernel of this step writes: the
    // weights, the tile metadata (copied in before the step's first kernel) and the first tile's
    // cache keys — positions before the token's own, written by earlier steps. Those steps'
    // kernels have all completed: this kernel starts only once its predecessor has triggered,
    // which every kernel does after its own wait, i.e. after everything before it completed. The
    // copies land while the previous kernel finishes; the e4m3 keys are expanded after the wait,
    // while the prologue's loads of the fresh q/k/v rows are in flight (expanding them here kept
    // the block from reaching its wait when the q/k/v projection ended: its blocks leave no room
    // for ours before their last ones exit).
    fc.Load(src, lane);
    geometry();
    if (z == 0) write_row = CacheRow(L, meta, t, t.pos0);
    if (z < n) {
      const int k0 = t.kbeg + tile_begin * kN;
      Loader::Rows(L, meta, t, k0, row);
      Loader::template Issue<Loader::Part::kCache>(nullptr, L.k_cache, L.k_scale, L.kv_heads, g,
                                                   t, k0, row, ks, k_sc);
      Loader::template Issue<Loader::Part::kCache>(nullptr, L.v_cache, L.v_scale, L.kv_heads, g,
                                                   t, k0, row, vs, v_sc);
    }
  }
  // PDL (launch.cuh): q (qkv), k/v and the cache rows of this step come from earlier kernels.
  GridDependencyWait();
  if (one_wave) TriggerDependents();
  if constexpr (!kFused) geometry();
  const int rows = t.nq * group;  // ≤ kR
  if constexpr (kFused) {
    if (t.kend != t.start) __trap();  // more than one new key: not a decode step's tile
  }
  if (z >= n) return;

  for (int i = tid; i < kR * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    bf16* dst = qs + r * kStride + c;
    if (r >= rows) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    } else if constexpr (!kFused) {
      const int head = g * group + r % group;
      CpAsync16(dst, q + (static_cast<int64_t>(t.tok0 + r / group) * L.heads + head) * D + c);
    }
  }
  // Where the tile loader takes the fresh key's row: k/v, or the block's own copy.
  const bf16* k_src = k_new;
  const bf16* v_src = v_new;
  int k0 = t.kbeg + tile_begin * kN;
  if constexpr (kFused) {
    FusedPrologue<D, kFp8>(src, fc, L, write_row, t, g, group, z == 0, qs, fk, fv, [&] {
      CpAsyncWaitAll();  // the first tile's cache keys (issued before the wait)
      Loader::Finish(ks, t, k0);
      Loader::Finish(vs, t, k0);
    });
    k_src = fk;
    v_src = fv;
    __syncthreads();  // q, k and v rows are visible to every warp (the loader copies k and v)
    // The first tile's cache keys are in place (expanded in the prologue); now its fresh key.
    Loader::template Issue<Loader::Part::kFresh>(fk, nullptr, nullptr, L.kv_heads, g, t, k0, row,
                                                 ks, k_sc);
    Loader::template Issue<Loader::Part::kFresh>(fv, nullptr, nullptr, L.kv_heads, g, t, k0, row,
                                                 vs, v_sc);
  } else {
    Loader::Rows(L, meta, t, k0, row);
    Loader::Issue(k_src, L.k_cache, L.k_scale, L.kv_heads, g, t, k0, row, ks, k_sc);
    Loader::Issue(v_src, L.v_cache, L.v_scale, L.kv_heads, g, t, k0, row, vs, v_sc);
    CpAsyncWaitAllButOne();  // Q and K
    Loader::Finish(ks, t, k0);
  }
  __syncthreads();

  // Qᵀ as the B operand of every k-step, kept in registers for the whole walk.
  uint32_t qf[kKSteps][2];
#pragma unroll
  for (int i = 0; i < kKSteps; ++i) {
    Ldsm2(qf[i], qs + (lane % 8) * kStride + i * 16 + (lane / 8 % 2) * 8);
  }

  // This lane's two query rows (the columns 2·(lane % 4) and + 1 of Sᵀ and Oᵀ).
  int pos[2];
  bool row_ok[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int r = 2 * (lane % 4) + e;
    row_ok[e] = r < rows;
    pos[e] = t.pos0 + r / group;
  }
  const bool pv_warp = warp < Shape::kPvWarps;
  const int dim0 = warp * Shape::kDimsPerWarp;  // this warp's head dims of Oᵀ
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // l: this lane's keys
  float o[kMt][4];
#pragma unroll
  for (int i = 0; i < kMt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  const int kw = warp * 16;  // the warp's keys of Sᵀ within a tile

  for (int kt = tile_begin; kt < tile_end; ++kt) {
    k0 = t.kbeg + kt * kN;
    const bool has_next = kt + 1 < tile_end;
    if (has_next) Loader::Rows(L, meta, t, k0 + kN, row);  // block-table loads overlap Sᵀ

    // Sᵀ = K·Qᵀ: 16 keys × 8 rows. s[0], s[1]: key kw + lane/4, rows 2(lane%4) + 0/1;
    // s[2], s[3]: key + 8.
    float sc[kChains][4];
#pragma unroll
    for (int c = 0; c < kChains; ++c) sc[c][0] = sc[c][1] = sc[c][2] = sc[c][3] = 0.0f;
#pragma unroll
    for (int i = 0; i < kKSteps; ++i) {
      uint32_t a[4];
      Ldsm4(a, ks + (kw + (lane / 8 % 2) * 8 + lane % 8) * kStride + i * 16 + (lane / 16) * 8);
      Mma(sc[i % kChains], a, qf[i][0], qf[i][1]);
    }
    float s[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      s[j] = sc[0][j];
#pragma unroll
      for (int c = 1; c < kChains; ++c) s[j] += sc[c][j];
    }
    float ksc[2] = {1.0f, 1.0f};
    if constexpr (kFp8) {
      ksc[0] = k_sc[kw + lane / 4];
      ksc[1] = k_sc[kw + lane / 4 + 8];
    }
    float mx[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      mx[e] = -INFINITY;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int p = k0 + kw + lane / 4 + 8 * h;
        float& x = s[2 * h + e];
        x = row_ok[e] && Visible(p, pos[e], L.window) ? x * ksc[h] : -INFINITY;
        mx[e] = fmaxf(mx[e], x);
      }
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], off));
      }
    }
    if (lane < 4) {
      wm[warp * kR + 2 * lane] = mx[0];
      wm[warp * kR + 2 * lane + 1] = mx[1];
    }
    __syncthreads();  // the maxima are visible; every warp is done with the K tile
    if (has_next) {
      Loader::Issue(k_src, L.k_cache, L.k_scale, L.kv_heads, g, t, k0 + kN, row, ks, k_sc);
    } else {
      CpAsyncCommit();
    }

    // The block's running max over the tile, the same in every warp; P = e^(S − m').
    float alpha[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int r = 2 * (lane % 4) + e;
      float m_new = m_run[e];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) m_new = fmaxf(m_new, wm[w * kR + r]);
      const float base = m_new == -INFINITY ? 0.0f : m_new;
      alpha[e] = m_new == -INFINITY ? 1.0f : __expf(m_run[e] - base);
      m_run[e] = m_new;
      s[e] = __expf(s[e] - base);
      s[2 + e] = __expf(s[2 + e] - base);
      l_run[e] = l_run[e] * alpha[e] + s[e] + s[2 + e];
      ps[r * kPStride + kw + lane / 4] = s[e];
      ps[r * kPStride + kw + lane / 4 + 8] = s[2 + e];
    }

    CpAsyncWaitAllButOne();  // V of this tile
    // kFused: the first tile's V was expanded in the prologue.
    if (!kFused || kt != tile_begin) Loader::Finish(vs, t, k0);
    __syncthreads();  // P and the V tile are visible

    // Oᵀ (this warp's dims × 8 rows) = Oᵀ·α + Vᵀ·Pᵀ over the tile's 64 keys. Pᵀ's B fragment
    // (k = keys, n = rows): keys 2(lane%4) + 0/1 and + 8/9 of the k-step, row lane/4, times
    // the keys' V scales (fp8), as hi + lo bf16 terms: fp32-accurate P·V (bf16 P alone moved
    // outputs by ~2^-9 relative, which the random MoE demo's router amplified into flips).
    if (pv_warp) {
#pragma unroll
      for (int i = 0; i < kMt; ++i) {
        o[i][0] *= alpha[0];
        o[i][1] *= alpha[1];
        o[i][2] *= alpha[0];
        o[i][3] *= alpha[1];
      }
#pragma unroll
      for (int st = 0; st < kN / 16; ++st) {
        const int key = st * 16 + 2 * (lane % 4);
        float2 p0 = *reinterpret_cast<const float2*>(ps + (lane / 4) * kPStride + key);
        float2 p1 = *reinterpret_cast<const float2*>(ps + (lane / 4) * kPStride + key + 8);
        if constexpr (kFp8) {
          p0.x *= v_sc[key];
          p0.y *= v_sc[key + 1];
          p1.x *= v_sc[key + 8];
          p1.y *= v_sc[key + 9];
        }
        uint32_t bh0, bl0, bh1, bl1;
        SplitBf16x2(p0.x, p0.y, &bh0, &bl0);
        SplitBf16x2(p1.x, p1.y, &bh1, &bl1);
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          uint32_t a[4];
          Ldsm4T(a, vs + (st * 16 + (lane / 16) * 8 + lane % 8) * kStride + dim0 + mt * 16 +
                        (lane / 8 % 2) * 8);
          Mma(o[mt], a, bl0, bl1);
          Mma(o[mt], a, bh0, bh1);
        }
      }
    }
    __syncthreads();  // every warp is done with the V tile and P
    if (has_next) {
      Loader::Issue(v_src, L.v_cache, L.v_scale, L.kv_heads, g, t, k0 + kN, row, vs, v_sc);
      CpAsyncWaitAllButOne();  // K of the next tile
      Loader::Finish(ks, t, k0 + kN);
      __syncthreads();
    }
  }

  // l: this lane's keys → the warp's → the block's (fixed order: deterministic).
#pragma unroll
  for (int e = 0; e < 2; ++e) {
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) l_run[e] += __shfl_xor_sync(0xffffffffu, l_run[e], off);
  }
  if (lane < 4) {
    wl[warp * kR + 2 * lane] = l_run[0];
    wl[warp * kR + 2 * lane + 1] = l_run[1];
  }
  __syncthreads();
  float l_tot[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    l_tot[e] = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) l_tot[e] += wl[w * kR + 2 * (lane % 4) + e];
  }
  // Rows 2(lane%4) and + 1 exist in this tile (others hold nothing to store or merge).
  const bool pair_used = 2 * (lane % 4) < rows;

  if (n > 1) {
    const int64_t slot = static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y;
    float* records = partial + slot * gridDim.z * Shape::kRecord;
    float* mine = records + static_cast<int64_t>(z) * Shape::kRecord;
    if (pv_warp && pair_used) {
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
        __stcg(reinterpret_cast<float4*>(mine + ((warp * kMt + mt) * 32 + lane) * 4),
               make_float4(o[mt][0], o[mt][1], o[mt][2], o[mt][3]));
      }
    }
    if (warp == 0 && lane < 4) {
      __stcg(reinterpret_cast<float2*>(mine + kR * D + 2 * lane), make_float2(m_run[0], m_run[1]));
      __stcg(reinterpret_cast<float2*>(mine + kR * D + kR + 2 * lane),
             make_float2(l_tot[0], l_tot[1]));
    }
    __threadfence();  // this thread's record is visible device-wide before the block counts
    __syncthreads();
    if (tid == 0) last_block = atomicAdd(counters + slot, 1) == n - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();  // acquire: the records of the blocks that counted before us are visible
    if (tid == 0) counters[slot] = 0;  // all n have counted: ready for the next launch

    // O = Σ_z e^(m_z − M) O_z, l = Σ_z e^(m_z − M) l_z, M = max_z m_z, in split order. The
    // records' (m, l) come in one round of loads (thread 4z + pair: rows 2·pair, + 1 of split z)
    // into smem (P's buffer is free); each thread then reads those of its two rows.
    static_assert(kThreads >= 4 * 32 && 2 * 32 * kR <= kR * kPStride, "≤ 32 splits");
    float* ms = ps;           // [n][kR]
    float* ls = ps + 32 * kR;  // [n][kR]
    if (tid < 4 * n) {
      const float* rec = records + static_cast<int64_t>(tid / 4) * Shape::kRecord + kR * D;
      const int r = 2 * (tid % 4);
      *reinterpret_cast<float2*>(ms + (tid / 4) * kR + r) =
          __ldcg(reinterpret_cast<const float2*>(rec + r));
      *reinterpret_cast<float2*>(ls + (tid / 4) * kR + r) =
          __ldcg(reinterpret_cast<const float2*>(rec + kR + r));
    }
    __syncthreads();
    const int r0 = 2 * (lane % 4);
    float mmax[2] = {-INFINITY, -INFINITY};
    for (int zz = 0; zz < n; ++zz) {
      mmax[0] = fmaxf(mmax[0], ms[zz * kR + r0]);
      mmax[1] = fmaxf(mmax[1], ms[zz * kR + r0 + 1]);
    }
    auto weight = [&](int zz, int e) {
      const float mz = ms[zz * kR + r0 + e];
      return mz == -INFINITY ? 0.0f : __expf(mz - mmax[e]);
    };
    l_tot[0] = l_tot[1] = 0.0f;
    for (int zz = 0; zz < n; ++zz) {
      l_tot[0] += weight(zz, 0) * ls[zz * kR + r0];
      l_tot[1] += weight(zz, 1) * ls[zz * kR + r0 + 1];
    }
#pragma unroll
    for (int i = 0; i < kMt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    if (pv_warp && pair_used) {
      constexpr int kUnroll = kMt >= 8 ? 2 : 16 / kMt;  // 16 float4 loads in flight a thread
#pragma unroll kUnroll
      for (int zz = 0; zz < n; ++zz) {
        const float* rec = records + static_cast<int64_t>(zz) * Shape::kRecord;
        float4 v[kMt];
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          v[mt] = __ldcg(reinterpret_cast<const float4*>(rec + ((warp * kMt + mt) * 32 + lane) * 4));
        }
        const float w0 = weight(zz, 0), w1 = weight(zz, 1);
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          o[mt][0] += w0 * v[mt].x;
          o[mt][1] += w1 * v[mt].y;
          o[mt][2] += w0 * v[mt].z;
          o[mt][3] += w1 * v[mt].w;
        }
      }
    }
  }

  // O / l as bf16, staged through smem (the K tile is free) for 16-byte stores.
  bf16* os = ks;  // [kR][D + pad]
  if (pv_warp) {
    const float inv0 = l_tot[0] > 0.0f ? 1.0f / l_tot[0] : 0.0f;
    const float inv1 = l_tot[1] > 0.0f ? 1.0f / l_tot[1] : 0.0f;
    const int r = 2 * (lane % 4);
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt) {
      const int d = dim0 + mt * 16 + lane / 4;
      os[r * kStride + d] = __float2bfloat16_rn(o[mt][0] * inv0);
      os[(r + 1) * kStride + d] = __float2bfloat16_rn(o[mt][1] * inv1);
      os[r * kStride + d + 8] = __float2bfloat16_rn(o[mt][2] * inv0);
      os[(r + 1) * kStride + d + 8] = __float2bfloat16_rn(o[mt][3] * inv1);
    }
  }
  __syncthreads();
  for (int i = tid; i < rows * (D / 8); i += kThreads) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    const int64_t out_row =
        static_cast<int64_t>(t.tok0 + r / group) * L.heads + g * group + r % group;
    *reinterpret_cast<uint4*>(out + out_row * D + c) =
        *reinterpret_cast<const uint4*>(os + r * kStride + c);
  }
}

// GS_ATTN_CARVEOUT=0 (read once): decode attention launches leave the shared-memory share to the
// driver (CarveoutFor off), for A/B measurement; both give the same bits.
bool CarveoutSwitch() {
  static const bool on = [] {
    const char* env = std::getenv("GS_ATTN_CARVEOUT");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return on;
}

// The shared-memory share of the SM (percent) for a grid of `blocks` blocks of `smem` bytes: room
// for the blocks an SM gets when the grid spreads evenly (at most min_blocks, the most that fit),
// the rest left to L1. The driver's default reserves room for min_blocks, which at head_dim 256
// leaves L1 almost nothing (3 × 76 KB of 228). Batch 1 (144 blocks, at most 2 an SM) then ran
// 2-3% slower on the H100; room for fewer blocks than the grid spreads (1 an SM at batch 1)
// cost batch 32 2.5% (docs/benchmarks.md, session 10). -1 (the driver's) when the device is
// unknown or the grid empty.
int CarveoutFor(int64_t blocks, size_t smem, int min_blocks) {
  static const int bytes = [] {  // shared memory an SM has, 0 when the query fails
    int dev = 0, b = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) !=
            cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return b;
  }();
  const int sms = DeviceSmCount();
  if (bytes <= 0 || blocks <= 0) return -1;
  const int64_t per_sm = std::min<int64_t>((blocks + sms - 1) / sms, min_blocks);
  const int64_t need = per_sm * static_cast<int64_t>(smem + 1024);  // 1 KB reserved a block
  return static_cast<int>(std::min<int64_t>(100, (need * 100 + bytes - 1) / bytes));
}

template <int D, bool kFp8, bool kFused>
Status Launch(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
              const bf16* v, const QkvNormRopeSource& src, int splits, float* partial,
              int* counters, bf16* out, cudaStream_t stream) {
  constexpr auto kernel = DecodeAttentionKernel<D, kFp8, kFused>;
  const size_t smem = DecodeShape<D>::SmemBytes(kFp8, kFused);
  static bool raised = false;
  if (!raised && smem > 48 * 1024) {
    GS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    raised = true;
  }
  const dim3 grid(m.num_tiles, L.kv_heads, splits);
  static const int resident = ResidentBlocks(kernel, kThreads, smem);
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  const bool one_wave = blocks <= resident;
  LaunchExtras extras;
  if (CarveoutSwitch()) {
    extras.carveout_percent = CarveoutFor(blocks, smem, DecodeShape<D>::MinBlocks(kFp8, kFused));
  }
  return LaunchKernelWith(kFused ? "DecodeAttentionKernel<fused>" : "DecodeAttentionKernel",
                          kernel, grid, extras, kThreads, smem, stream, L, m, q, k, v, src,
                          partial, counters, out, one_wave);
}

template <bool kFp8, bool kFused>
Status LaunchDtype(const AttentionLayer& L, const AttentionMeta& m, const bf16* q, const bf16* k,
                   const bf16* v, const QkvNormRopeSource& src, int splits, float* partial,
                   int* counters, bf16* out, cudaStream_t stream) {
  switch (L.head_dim) {
#define GS_DECODE_CASE(D) \
  case D: return Launch<D, kFp8, kFused>(L, m, q, k, v, src, splits, partial, counters, out, stream);
    GS_DECODE_CASE(32)
    GS_DECODE_CASE(64)
    GS_DECODE_CASE(128)
    GS_DECODE_CASE(256)
    GS_DECODE_CASE(512)
#undef GS_DECODE_CASE
    default:
      return MakeError("LaunchAttention: head_dim ", L.head_dim,
                       " is not supported (32, 64, 128, 256, 512)");
  }
}

}  // namespace

int DecodeTileRows() { return kR; }
int AttentionDecodeKeyTile() { return kN; }

size_t DecodePartialFloats(int head_dim, int num_tiles, int kv_heads, int splits) {
  return static_cast<size_t>(num_tiles) * kv_heads * splits * (kR * head_dim + 2 * kR);
}

Status LaunchDecodeAttention(const AttentionLayer& L, const AttentionMeta& m, const bf16* q,
                             const bf16* k, const bf16* v, const QkvNormRopeSource* fused,
                             int splits, float* partial, int* counters, bf16* out,
                             cudaStream_t stream) {
  if (splits > 32) {
    return MakeError("LaunchAttention: the decode kernel merges at most 32 splits, not ", splits);
  }
  const bool fp8 = L.kv_dtype == KvDtype::kFp8E4m3;
  if (fused != nullptr) {
    return fp8 ? LaunchDtype<true, true>(L, m, q, k, v, *fused, splits, partial, counters, out,
                                         stream)
               : LaunchDtype<false, true>(L, m, q, k, v, *fused, splits, partial, counters, out,
                                          stream);
  }
  const QkvNormRopeSource none;
  return fp8 ? LaunchDtype<true, false>(L, m, q, k, v, none, splits, partial, counters, out, stream)
             : LaunchDtype<false, false>(L, m, q, k, v, none, splits, partial, counters, out,
                                         stream);
}

}  // namespace gs::cuda
