// Final-logit softcap, greedy selection and sampling on the GPU, so a decode step can return token
// ids without copying [batch, 262144] logits to the host.
//
// Sampling (issue 4) without a sort: the kept set of top-k / top-p / min-p is always a prefix of
// the order (logit descending, index ascending), so it is found as a threshold (key, index) by
// multi-way bisection over the logits' order-preserving 32-bit keys, each step one pass over the
// row with deterministic reductions (fixed per-thread order, fixed tree: no float atomics, so the
// result never depends on scheduling). The draw is Gumbel-max over the kept set with noise hashed
// from (seed, step, index).
#include <cfloat>
#include <algorithm>
#include <climits>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

// x = cap · tanh(x / cap) (reference gemma4 §3.7).
__global__ void SoftcapKernel(float* __restrict__ x, int64_t n, float cap) {
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const float inv = 1.0f / cap;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = cap * tanhf(x[i] * inv);
  }
}

__device__ __forceinline__ void Better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// Greedy selection over [rows, vocab] logits, fused with the softcap: grid (chunks, rows). Block
// (c, r) softcaps chunk c of row r in place (cap > 0) and reduces it to its best (value, lowest
// index), which it publishes in `partials`; the block that counts last in the row's counter
// (__threadfence() before counting, as RouterDecodeKernel) reduces the row's partials, writes the
// id and resets the counter for the next launch or graph replay. A row of one chunk writes its
// id directly. NaN never wins (comparisons with NaN are false); a row without a winner (all NaN)
// gives 0. The (value, lowest index) maximum is exact and order-free: the result never depends
// on the chunking or on scheduling.
constexpr int kArgmaxThreads = 256;
constexpr int kArgmaxMaxChunks = 256;  // per row: the partials' row stride

struct ArgmaxPartial {
  float value;
  int index;
};

// The (value, lowest index) maximum over the block, valid in thread 0. `sv`/`si`: 32 each.
__device__ __forceinline__ void BlockBest(float& v, int& i, float* sv, int* si) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    const bool has = lane < static_cast<int>(blockDim.x / 32);
    v = has ? sv[lane] : -INFINITY;
    i = has ? si[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      Better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    }
  }
}

// SoftcapKernel's formula exactly (bit-identical results).
__device__ __forceinline__ float Cap(float x, float cap, float inv) { return cap * tanhf(x * inv); }

__global__ void __launch_bounds__(kArgmaxThreads)
    SoftcapArgmaxKernel(float* __restrict__ logits, int vocab, float cap, int chunk4,
                        int* __restrict__ out, int* __restrict__ counters,
                        ArgmaxPartial* __restrict__ partials, bool trigger) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ bool last;
  GridDependencyWait();  // PDL (launch.cuh): the logits come from the lm_head GEMM
  if (trigger) TriggerDependents();
  const int r = blockIdx.y, c = blockIdx.x, chunks = gridDim.x;
  const bool capped = cap > 0.0f;
  const float inv = 1.0f / cap;
  float* row = logits + static_cast<int64_t>(r) * vocab;
  // The row as an unaligned head (< 4 floats), 16-byte aligned float4s, and a tail (< 4).
  const int head = min(static_cast<int>((16 - (reinterpret_cast<uintptr_t>(row) & 15)) / 4 & 3),
                       vocab);
  const int n4 = (vocab - head) / 4, tail = head + 4 * n4;
  float4* body = reinterpret_cast<float4*>(row + head);
  float best = -INFINITY;
  int best_i = INT_MAX;
  const int q1 = min(c * chunk4 + chunk4, n4);
#pragma unroll 4
  for (int q = c * chunk4 + threadIdx.x; q < q1; q += kArgmaxThreads) {
    float4 x = body[q];
    if (capped) {
      x = make_float4(Cap(x.x, cap, inv), Cap(x.y, cap, inv), Cap(x.z, cap, inv),
                      Cap(x.w, cap, inv));
      body[q] = x;
    }
    const int i = head + 4 * q;
    Better(best, best_i, x.x, i);
    Better(best, best_i, x.y, i + 1);
    Better(best, best_i, x.z, i + 2);
    Better(best, best_i, x.w, i + 3);
  }
  if (c == 0) {  // the head and the tail: at most 3 floats each
    const int i = threadIdx.x < head ? threadIdx.x : tail + threadIdx.x - head;
    if (threadIdx.x < head + (vocab - tail)) {
      float x = row[i];
      if (capped) {
        x = Cap(x, cap, inv);
        row[i] = x;
      }
      Better(best, best_i, x, i);
    }
  }
  BlockBest(best, best_i, sv, si);
  if (chunks == 1) {
    if (threadIdx.x == 0) out[r] = best_i == INT_MAX ? 0 : best_i;
    return;
  }
  ArgmaxPartial* row_partials = partials + static_cast<int64_t>(r) * kArgmaxMaxChunks;
  if (threadIdx.x == 0) {
    row_partials[c] = ArgmaxPartial{best, best_i};
    __threadfence();  // the partial is visible device-wide before the block counts
    last = atomicAdd(counters + r, 1) == chunks - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();  // acquire side: the row's other partials, counted before us, are visible
  best = -INFINITY;
  best_i = INT_MAX;
  for (int k = threadIdx.x; k < chunks; k += kArgmaxThreads) {
    // L2 reads (__ldcg): other blocks wrote them during this grid.
    const float v = __ldcg(&row_partials[k].value);
    const int i = __ldcg(&row_partials[k].index);
    Better(best, best_i, v, i);
  }
  BlockBest(best, best_i, sv, si);  // sv/si reuse: the barrier after `last` ordered the reads
  if (threadIdx.x == 0) {
    out[r] = best_i == INT_MAX ? 0 : best_i;
    counters[r] = 0;  // every block of the row has counted: ready for the next launch
  }
}

// ---- sampling ----

// 512 threads leave 128 registers each for the 16-way passes with several float4 loads in flight.
constexpr int kSampleThreads = 512;
constexpr int kWarps = kSampleThreads / 32;
constexpr int kWays = 16;  // thresholds per bisection pass: 4 bits of the key per pass

// Monotone map of floats to uint32 (larger float, larger key); NaN maps to 0, below -inf.
__device__ __forceinline__ uint32_t OrderKey(float f) {
  if (f != f) return 0u;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float KeyValue(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Loads a logit; NaN counts as -inf (never kept, never drawn).
__device__ __forceinline__ float LoadLogit(const float* row, int i) {
  const float l = row[i];
  return l != l ? -INFINITY : l;
}

// Calls f(i, logit) for this thread's elements of the row (NaN as -inf), with 16-byte loads when
// the row allows them. Every pass visits a thread's elements in the same order, so a sum over the
// same elements comes out bit-identical in every pass.
template <class F>
__device__ __forceinline__ void ForEachLogit(const float* row, int n, F&& f) {
  if ((n & 3) == 0 && (reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    const int n4 = n >> 2;
#pragma unroll 4
    for (int v = threadIdx.x; v < n4; v += kSampleThreads) {
      const float4 x = __ldg(row4 + v);
      const int i = 4 * v;
      f(i, x.x != x.x ? -INFINITY : x.x);
      f(i + 1, x.y != x.y ? -INFINITY : x.y);
      f(i + 2, x.z != x.z ? -INFINITY : x.z);
      f(i + 3, x.w != x.w ? -INFINITY : x.w);
    }
  } else {
    for (int i = threadIdx.x; i < n; i += kSampleThreads) f(i, LoadLogit(row, i));
  }
}

// splitmix64's finalizer (a bijection with full avalanche).
__device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Sums W values over the block, the same way every time; every thread gets the totals.
// `smem` holds kWarps * W values.
template <int W, typename T>
__device__ void BlockSumArray(T (&v)[W], T* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < W; ++j) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < W; ++j) smem[warp * W + j] = v[j];
  }
  __syncthreads();
  if (threadIdx.x < W) {
    T total = smem[threadIdx.x];
    for (int w = 1; w < kWarps; ++w) total += smem[w * W + threadIdx.x];
    smem[kWarps * W + threadIdx.x] = total;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < W; ++j) v[j] = smem[kWarps * W + j];
  __syncthreads();  // smem is reused by the next call
}

// What one element adds to a bisection pass: its key and its contribution.
template <typename T>
struct KeyContrib {
  uint32_t key;
  T c;
};

template <typename T>
struct SampleSmem;
template <>
struct SampleSmem<int> {
  __device__ static int* Get(int* i, float*) { return i; }
};
template <>
struct SampleSmem<float> {
  __device__ static float* Get(int*, float* f) { return f; }
};

// The largest t in [lo, hi] with F(t) >= target, where F(t) = Σ over the row of elem(i, l).second
// for elements whose elem(i, l).first >= t (F is non-increasing in t; F(lo) >= target is given).
// Each round evaluates kWays thresholds spread over (lo, hi] in one pass.
template <typename T, class Elem>
__device__ uint32_t LargestKey(const float* row, int n, uint32_t lo, uint32_t hi, T target,
                               Elem elem, int* si, float* sf) {
  T* smem = SampleSmem<T>::Get(si, sf);
  while (lo < hi) {
    const uint64_t span = static_cast<uint64_t>(hi) - lo;
    uint32_t t[kWays];
#pragma unroll
    for (int j = 0; j < kWays; ++j) {
      t[j] = lo + static_cast<uint32_t>((span * (j + 1) + kWays - 1) / kWays);
    }
    T acc[kWays];
#pragma unroll
    for (int j = 0; j < kWays; ++j) acc[j] = T(0);
    ForEachLogit(row, n, [&](int i, float l) {
      const auto [key, c] = elem(i, l);
#pragma unroll
      for (int j = 0; j < kWays; ++j) acc[j] += key >= t[j] ? c : T(0);
    });
    BlockSumArray<kWays>(acc, smem);
    int found = -1;
#pragma unroll
    for (int j = 0; j < kWays; ++j) found = acc[j] >= target ? j : found;
    if (found < 0) {
      hi = t[0] - 1;
    } else {
      lo = t[found];
      if (found < kWays - 1) hi = t[found + 1] - 1;
    }
  }
  return lo;
}

// A prefix of the order (key descending, index ascending): element (k, i) is in it when
// k > key, or k == key and i <= index.
struct Prefix {
  uint32_t key = 0;
  int index = INT_MAX;
  __device__ bool Has(uint32_t k, int i) const { return k > key || (k == key && i <= index); }
};

// The lowest index x such that `r` elements with key == `key` inside `within` have index <= x
// (searched as the largest n-1-x).
__device__ int RthTieIndex(const float* row, int n, uint32_t key, Prefix within, int r, int* si,
                           float* sf) {
  const uint32_t t = LargestKey<int>(
      row, n, 0u, static_cast<uint32_t>(n - 1), r,
      [&](int i, float l) {
        const uint32_t k = OrderKey(l);
        return KeyContrib<int>{static_cast<uint32_t>(n - 1 - i),
                               (k == key && within.Has(k, i)) ? 1 : 0};
      },
      si, sf);
  return n - 1 - static_cast<int>(t);
}

// (value, lowest index) maximum over the block; every thread gets it.
__device__ void BlockArgmax(float& v, int& i, int* si, float* sf) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    sf[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  v = sf[0];
  i = si[0];
  for (int w = 1; w < kWarps; ++w) Better(v, i, sf[w], si[w]);
  __syncthreads();
}

// The kept set as a prefix of the order, then a Gumbel-max draw from it. m: the row's maximum
// (finite). Mirrors Sampler::SampleTruncated: top-k first (ties at the k-th value: lower indices
// kept), top-p over the top-k set renormalized (the shortest prefix whose mass reaches top_p, ties
// at the cut taken in index order), min-p relative to the top probability.
__device__ int SampleTruncated(const float* row, int n, const SampleRowParams& p, float m, int top,
                               int* si, float* sf) {
  const float inv_t = 1.0f / p.temperature;
  auto weight = [&](float l) { return expf((l - m) * inv_t); };  // p_i / p_max
  const uint32_t top_key = OrderKey(m);
  Prefix keep;  // everything
  if (p.top_k > 0 && p.top_k < n) {
    // The k-th largest key, then how many of its ties fit.
    const uint32_t kk = LargestKey<int>(
        row, n, 0u, top_key, p.top_k,
        [&](int, float l) { return KeyContrib<int>{OrderKey(l), 1}; }, si, sf);
    int c[2] = {0, 0};  // keys above kk, keys equal to kk
    ForEachLogit(row, n, [&](int, float l) {
      const uint32_t k = OrderKey(l);
      c[0] += k > kk ? 1 : 0;
      c[1] += k == kk ? 1 : 0;
    });
    BlockSumArray<2>(c, si);
    const int r = p.top_k - c[0];
    keep.key = kk;
    keep.index = r >= c[1] ? INT_MAX : RthTieIndex(row, n, kk, Prefix{}, r, si, sf);
  }
  if (p.top_p < 1.0f) {
    float z[1] = {0.0f};
    ForEachLogit(row, n, [&](int i, float l) {
      if (keep.Has(OrderKey(l), i)) z[0] += weight(l);
    });
    BlockSumArray<1>(z, sf);
    const float target = p.top_p * z[0];
    const uint32_t t = LargestKey<float>(
        row, n, keep.key, top_key, target,
        [&](int i, float l) {
          const uint32_t k = OrderKey(l);
          return KeyContrib<float>{k, keep.Has(k, i) ? weight(l) : 0.0f};
        },
        si, sf);
    float above[1] = {0.0f};
    int ties[1] = {0};
    ForEachLogit(row, n, [&](int i, float l) {
      const uint32_t k = OrderKey(l);
      if (!keep.Has(k, i)) return;
      if (k > t) above[0] += weight(l);
      if (k == t) ++ties[0];
    });
    BlockSumArray<1>(above, sf);
    BlockSumArray<1>(ties, si);
    // Ties at the cut weigh the same: take as many (in index order) as reach the target.
    const float w_t = weight(KeyValue(t));
    int take = ties[0];
    if (w_t > 0.0f) {
      const float need = ceilf((target - above[0]) / w_t);
      take = static_cast<int>(fminf(fmaxf(need, 1.0f), static_cast<float>(ties[0])));
    }
    Prefix cut{t, t == keep.key ? keep.index : INT_MAX};
    if (take < ties[0]) cut.index = RthTieIndex(row, n, t, keep, take, si, sf);
    keep = cut;
  }
  const uint64_t row_key = Mix64(p.seed ^ Mix64(p.step ^ 0x5851f42d4c957f2dull));
  float best = -INFINITY;
  int best_i = INT_MAX;
  ForEachLogit(row, n, [&](int i, float l) {
    if (!keep.Has(OrderKey(l), i)) return;
    if (p.min_p > 0.0f && !(weight(l) >= p.min_p)) return;
    // u in [2^-24, 1 - 2^-24]; -log(-log u) is Gumbel noise.
    const uint64_t h = Mix64(row_key + static_cast<uint64_t>(i));
    const float u = static_cast<float>(h >> 41) * 0x1p-23f + 0x1p-24f;
    Better(best, best_i, (l - m) * inv_t - logf(-logf(u)), i);
  });
  BlockArgmax(best, best_i, si, sf);
  return best_i == INT_MAX ? top : best_i;
}

__global__ void __launch_bounds__(kSampleThreads, 1)
    SampleKernel(const float* __restrict__ logits, int vocab,
                 const SampleRowParams* __restrict__ params, int* __restrict__ ids,
                 float* __restrict__ logprobs) {
  __shared__ int si[kWarps * kWays + kWays];
  __shared__ float sf[kWarps * kWays + kWays];
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const SampleRowParams p = params[blockIdx.x];
  float m = -INFINITY;
  int top = INT_MAX;
  ForEachLogit(row, vocab, [&](int i, float l) { Better(m, top, l, i); });
  BlockArgmax(m, top, si, sf);
  if (top == INT_MAX) top = 0;
  const bool greedy = !(p.temperature > 0.0f) || p.top_k == 1 || !isfinite(m);
  const int id = greedy ? top : SampleTruncated(row, vocab, p, m, top, si, sf);
  float lp = 0.0f;
  if (logprobs) {
    float z[1] = {0.0f};
    ForEachLogit(row, vocab, [&](int, float l) { z[0] += expf(l - m); });
    BlockSumArray<1>(z, sf);
    lp = LoadLogit(row, id) - m - logf(z[0]);
  }
  if (threadIdx.x == 0) {
    ids[blockIdx.x] = id;
    if (logprobs) logprobs[blockIdx.x] = lp;
  }
}

}  // namespace

Status LaunchSoftcap(float* logits, int64_t n, float cap, cudaStream_t stream) {
  if (n <= 0 || cap <= 0.0f) return Ok();
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 8 * DeviceSmCount()));
  return LaunchKernel("SoftcapKernel", SoftcapKernel, blocks, 256, 0, stream, logits, n, cap);
}

size_t SoftcapArgmaxScratchBytes(int rows) {
  const size_t r = static_cast<size_t>(rows > 0 ? rows : 0);
  return (r * sizeof(int) + 15) / 16 * 16 + r * kArgmaxMaxChunks * sizeof(ArgmaxPartial);
}

Status LaunchSoftcapArgmax(float* logits, int rows, int vocab, float cap, int* out, void* scratch,
                           size_t scratch_bytes, cudaStream_t stream) {
  if (rows <= 0) return Ok();
  if (vocab <= 0) return MakeError("LaunchSoftcapArgmax: vocab ", vocab, " must be > 0");
  if (rows > 65535) return MakeError("LaunchSoftcapArgmax: ", rows, " rows (at most 65535)");
  if ((reinterpret_cast<uintptr_t>(logits) & 3) != 0) {
    return MakeError("LaunchSoftcapArgmax: logits not 4-byte aligned");
  }
  const size_t need = SoftcapArgmaxScratchBytes(rows);
  if (scratch == nullptr || scratch_bytes < need ||
      (reinterpret_cast<uintptr_t>(scratch) & 15) != 0) {
    return MakeError("LaunchSoftcapArgmax: scratch of ", scratch_bytes, " bytes at ", scratch,
                     " for ", rows, " rows (needs ", need, " bytes, 16-byte aligned)");
  }
  // About two blocks per SM over all rows (few rows: many chunks each, so a decode step reads its
  // 1 MB rows with the whole GPU), at least one float4 per thread, ≤ kArgmaxMaxChunks.
  const int n4 = vocab / 4;
  const int sms = DeviceSmCount();
  int chunks = std::clamp((2 * sms + rows - 1) / rows, 1, kArgmaxMaxChunks);
  chunks = std::min(chunks, std::max(1, (n4 + kArgmaxThreads - 1) / kArgmaxThreads));
  const int chunk4 = std::max(1, (n4 + chunks - 1) / chunks);
  chunks = std::max(1, (n4 + chunk4 - 1) / chunk4);
  // The early trigger (launch.cuh rule 3) only when the grid is resident at once.
  static const int resident = ResidentBlocks(SoftcapArgmaxKernel, kArgmaxThreads, 0);
  const bool trigger = static_cast<int64_t>(chunks) * rows <= resident;
  int* counters = static_cast<int*>(scratch);
  auto* partials = reinterpret_cast<ArgmaxPartial*>(static_cast<char*>(scratch) +
                                                    (static_cast<size_t>(rows) * 4 + 15) / 16 * 16);
  return LaunchKernel("SoftcapArgmaxKernel", SoftcapArgmaxKernel, dim3(chunks, rows),
                      kArgmaxThreads, 0, stream, logits, vocab, cap, chunk4, out, counters,
                      partials, trigger);
}

Status LaunchSample(const float* logits, int rows, int vocab, const SampleRowParams* params,
                    int* ids, float* logprobs, cudaStream_t stream) {
  if (rows <= 0) return Ok();
  if (vocab <= 0) return MakeError("LaunchSample: vocab ", vocab, " must be > 0");
  return LaunchKernel("SampleKernel", SampleKernel, rows, kSampleThreads, 0, stream, logits, vocab,
                      params, ids, logprobs);
}

}  // namespace gs::cuda
