// Attention of one layer for one sequence's chunk of new tokens, against the cached past.
#pragma once

#include <utility>
#include <vector>

#include "model/config.h"
#include "runtime/cpu/cpu_kv_cache.h"
#include "util/thread_pool.h"

namespace gs::cpu {

struct AttentionChunk {
  const LayerConfig* layer = nullptr;
  int layer_index = 0;
  int num_heads = 0;
  int sliding_window = 0;  // used on sliding layers only
  const BatchSequence* seq = nullptr;
  // The chunk's rows: q [n, heads·d], k and v [n, kv_heads·d]: normed, k and q rotated.
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  // Image spans of this chunk as chunk-local [begin, end): on sliding layers a query inside one
  // also sees the span's later keys (never past the window on the old side). Null = causal.
  const std::vector<std::pair<int, int>>* bidirectional_blocks = nullptr;
};

// out[i] = Σ_j softmax_j(q_i · k_j) v_j over the keys query i may see: positions ≤ its own, and
// on sliding layers only the last `sliding_window` of them, plus (sliding layers) the rest of the
// query's image span. Scale 1.0 and no softcap (Gemma 4).
// Keys before the chunk come from the cache, keys inside it from the chunk itself, so a chunk
// longer than the window still sees exactly its window. Then the chunk's K/V go into the cache.
void AttendAndCache(const AttentionChunk& chunk, KvCache& cache, float* out, ThreadPool& pool);

}  // namespace gs::cpu
