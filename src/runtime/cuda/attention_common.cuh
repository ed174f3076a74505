// Device helpers shared by the prefill and decode attention kernels: the query tile's key range,
// cache addressing (ring or paged), the tensor-core primitives (mma.sync m16n8k16 bf16 → fp32,
// ldmatrix, movmatrix) and the K/V tile loader that brings keys into shared memory as bf16.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "runtime/cuda/fp8_kv_layout.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/kv_store.cuh"

namespace gs::cuda::attn {

constexpr int kPad = 8;  // bf16 padding of a smem K/V/Q row (16 B): conflict-free ldmatrix

struct TileInfo {
  int tok0, nq, start, first, slot, table, pos0, kbeg, kend;
};

// The tile's tokens are positions pos0 … pos0 + nq − 1; its keys are [kbeg, kend].
__device__ __forceinline__ TileInfo GetTile(const AttentionMeta& m, int tile, int window) {
  TileInfo t;
  const int s = m.tile_seq[tile];
  t.tok0 = m.tile_first[tile];
  t.nq = m.tile_count[tile];
  t.start = m.seq_start[s];
  t.first = m.seq_first[s];
  t.slot = m.seq_slot[s];
  t.table = m.seq_table[s];
  t.pos0 = t.start + (t.tok0 - t.first);
  t.kend = t.pos0 + t.nq - 1;
  // Image tokens may see keys after their own position (up to their span's end): the tile's
  // keys then reach the limit of its last token (limits never decrease along a sequence).
  if (m.key_limit != nullptr) t.kend = max(t.kend, m.key_limit[t.tok0 + t.nq - 1]);
  t.kbeg = window > 0 ? max(0, t.pos0 - window + 1) : 0;
  return t;
}

// Cache row of position p of the tile's sequence (kv::CacheRowAt).
__device__ __forceinline__ int64_t CacheRow(const AttentionLayer& L, const AttentionMeta& m,
                                            const TileInfo& t, int p) {
  return kv::CacheRowAt(L, m, t.slot, t.table, p);
}

// This block's share [begin, end) of the n_tiles key tiles. Each non-empty split gets at least
// min_tiles tiles: with short contexts the trailing splits are empty, so the split count can be
// fixed per batch shape (decode graphs) without spending blocks on slivers.
__device__ __forceinline__ void SplitTiles(int n_tiles, int min_tiles, int* begin, int* end) {
  const int splits = min(static_cast<int>(gridDim.z), max(1, (n_tiles + min_tiles - 1) / min_tiles));
  const int per_split = (n_tiles + splits - 1) / splits;
  *begin = blockIdx.z * per_split;
  *end = min(n_tiles, *begin + per_split);
}

// Key p is visible to the query at position pos (causal, and inside the sliding window).
__device__ __forceinline__ bool Visible(int p, int pos, int window) {
  return p <= pos && (window == 0 || pos - p < window);
}

// The same with the query's last visible key `limit` ≥ pos (image spans; HF's rule: (k ≤ q or
// same image) and k > q − window — the window only bounds the past).
__device__ __forceinline__ bool VisibleUpTo(int p, int pos, int limit, int window) {
  return p <= limit && (window == 0 || pos - p < window);
}

// ---- tensor-core and async-copy primitives ----

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// c += a · b, a 16×16 (row), b 16×8 (col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p))
               : "memory");
}

__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p))
               : "memory");
}

__device__ __forceinline__ void Ldsm2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SmemAddr(p))
               : "memory");
}

// Transposes an 8×8 b16 matrix held as one fragment register per lane.
__device__ __forceinline__ uint32_t MovTrans(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Splits (a, b) into two packed bf16 pairs with hi + lo = (a, b) to ~16 mantissa bits:
// hi = bf16(x), lo = bf16(x − hi). Two mmas with hi and lo make P·V as accurate as fp32 P.
__device__ __forceinline__ void SplitBf16x2(float a, float b, uint32_t* hi, uint32_t* lo) {
  *hi = PackBf16(a, b);
  *lo = PackBf16(a - __uint_as_float(*hi << 16), b - __uint_as_float(*hi & 0xffff0000u));
}

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(SmemAddr(smem)), "l"(gmem)
               : "memory");
}
__device__ __forceinline__ void CpAsync8(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(SmemAddr(smem)), "l"(gmem)
               : "memory");
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(SmemAddr(smem)), "l"(gmem)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until all of this thread's committed groups have landed.
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Waits until at most one of this thread's committed groups is still in flight.
__device__ __forceinline__ void CpAsyncWaitAllButOne() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

// 8 e4m3 codes of a cache row in its byte order [v0 v2 v1 v3 | v4 v6 v5 v7] → v0..v7 as bf16,
// each exactly e4m3 · 2^-120 (the row's stored scale carries the 2^120 back). Per 32-bit word
// A = [v0 v2 v1 v3], with bf16 bits = ((b & 0x7f) << 4) | ((b & 0x80) << 8) for a code b:
//   (v0, v1) = ((A << 4) & 0x07F007F0) | ((A << 8) & 0x80008000)
//   (v2, v3) = ((A >> 4) & 0x07F007F0) | ( A       & 0x80008000)
// (why these are exact, and the scale convention: fp8_kv_layout.h).
__device__ __forceinline__ uint4 ExpandE4m3x8ToScaledBf16(uint2 codes) {
  return make_uint4(fp8kv::Bytes02ToScaledBf16x2(codes.x), fp8kv::Bytes13ToScaledBf16x2(codes.x),
                    fp8kv::Bytes02ToScaledBf16x2(codes.y), fp8kv::Bytes13ToScaledBf16x2(codes.y));
}

// ---- K/V tiles ----

// Where a tile's keys come from: the chunk's fresh bf16 k/v (positions ≥ the sequence's first
// new position) or the cache (earlier positions).
struct KvSource {
  const bf16* fresh;          // [T, kv, D]
  const void* cache;          // [rows, kv, D], bf16 or e4m3
  const float* cache_scale;   // [rows, kv] (fp8: stored scales s · 2^120)
};

// Loads keys [k0, k0 + N) of kv head g into a bf16 smem tile [N][D + kPad]; keys past the tile's
// last key (kend) become zeros, so masked probabilities (0) never meet stale values. bf16 rows go
// straight to the tile with cp.async; e4m3 rows land in `staging` ([N][D] bytes) and Finish()
// expands them — each thread converts exactly the chunks it copied, so no barrier is needed
// between the copy and the expansion. With fp8, `scales` [N] receives each key's scale (the
// cache's stored s · 2^120, which undoes the expansion's 2^-120; 1 for fresh rows, 0 past kend),
// applied by the kernels to scores (K) or probabilities (V).
// Issue() always commits one cp.async group (possibly empty) so the kernels can count groups.
template <int D, int N, int kThreads, bool kFp8>
struct KvTileLoader {
  static constexpr int kChunks = D / 8;  // 8 elements (16 B bf16, 8 B e4m3) per copy
  static constexpr int kItems = N * kChunks / kThreads;
  static_assert(N * kChunks % kThreads == 0 && kItems <= 32, "tile does not divide the threads");
  static_assert(N <= kThreads, "one thread per key loads the scales");

  __device__ __forceinline__ void Issue(const KvSource& src, const AttentionLayer& L,
                                        const AttentionMeta& m, const TileInfo& t, int g, int k0,
                                        bf16* tile, uint8_t* staging, float* scales) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid + i * kThreads, j = idx / kChunks, c = (idx % kChunks) * 8;
      const int p = k0 + j;
      bf16* dst = tile + j * (D + kPad) + c;
      if (p > t.kend) {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
      } else if (p >= t.start) {
        CpAsync16(dst, src.fresh + (static_cast<int64_t>(t.first + p - t.start) * L.kv_heads + g) * D + c);
      } else {
        const int64_t off = (CacheRow(L, m, t, p) * L.kv_heads + g) * D + c;
        if constexpr (kFp8) {
          CpAsync8(staging + j * D + c, static_cast<const uint8_t*>(src.cache) + off);
        } else {
          CpAsync16(dst, static_cast<const bf16*>(src.cache) + off);
        }
      }
    }
    if constexpr (kFp8) {
      if (tid < N) {
        const int p = k0 + tid;
        if (p > t.kend) {
          scales[tid] = 0.0f;
        } else if (p >= t.start) {
          scales[tid] = 1.0f;
        } else {
          CpAsync4(scales + tid, src.cache_scale + CacheRow(L, m, t, p) * L.kv_heads + g);
        }
      }
    }
    CpAsyncCommit();
  }

  // After CpAsyncWait…: expands this thread's e4m3 chunks of the tile at k0 (those Issue() put
  // in staging: cache positions, p < t.start); a barrier must follow before others read the
  // tile. Recomputing which chunks those were keeps no mask in registers across the loop.
  __device__ __forceinline__ void Finish(bf16* tile, const uint8_t* staging, const TileInfo& t,
                                         int k0) const {
    if constexpr (kFp8) {
      const int tid = threadIdx.x;
#pragma unroll 1  // rolled: this runs where the kernels' registers are at their peak
      for (int i = 0; i < kItems; ++i) {
        const int idx = tid + i * kThreads, j = idx / kChunks, c = (idx % kChunks) * 8;
        if (k0 + j >= t.start) continue;
        const uint2 codes = *reinterpret_cast<const uint2*>(staging + j * D + c);
        *reinterpret_cast<uint4*>(tile + j * (D + kPad) + c) = ExpandE4m3x8ToScaledBf16(codes);
      }
    }
  }
};

}  // namespace gs::cuda::attn
