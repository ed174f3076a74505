#include "runtime/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace gs::cpu {

void AttendAndCache(const AttentionChunk& c, KvCache& cache, float* out, ThreadPool& pool) {
  const LayerConfig& lc = *c.layer;
  const BatchSequence& seq = *c.seq;
  const int d = lc.head_dim, n = seq.num_tokens, start = seq.start_position;
  const int kv_row = lc.num_kv_heads * d, q_row = c.num_heads * d;
  const int group = c.num_heads / lc.num_kv_heads;  // q head h reads kv head h / group
  const bool sliding = lc.kind == LayerKind::kSliding;
  // Last visible key of chunk query i: its own position, or the end of its image span.
  std::vector<int> last(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) last[static_cast<size_t>(i)] = start + i;
  if (sliding && c.bidirectional_blocks) {
    for (const auto& [b0, b1] : *c.bidirectional_blocks) {
      for (int i = b0; i < b1; ++i) last[static_cast<size_t>(i)] = start + b1 - 1;
    }
  }

  pool.ParallelFor(static_cast<int64_t>(n) * c.num_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int i = static_cast<int>(task / c.num_heads), h = static_cast<int>(task % c.num_heads);
      const int pos = start + i, g = h / group, stop = last[static_cast<size_t>(i)];
      const int first = sliding ? std::max(0, pos - c.sliding_window + 1) : 0;
      const float* qh = c.q + static_cast<int64_t>(i) * q_row + h * d;
      auto key = [&](int p) -> const float* {
        return p >= start ? c.k + static_cast<int64_t>(p - start) * kv_row + g * d
                          : cache.Key(c.layer_index, seq, p) + g * d;
      };
      auto value = [&](int p) -> const float* {
        return p >= start ? c.v + static_cast<int64_t>(p - start) * kv_row + g * d
                          : cache.Value(c.layer_index, seq, p) + g * d;
      };
      scores.assign(static_cast<size_t>(stop - first + 1), 0.0f);
      float max_score = -INFINITY;
      for (int p = first; p <= stop; ++p) {
        const float* kp = key(p);
        float s = 0.0f;
        for (int x = 0; x < d; ++x) s += qh[x] * kp[x];
        scores[static_cast<size_t>(p - first)] = s;
        max_score = std::max(max_score, s);
      }
      double sum = 0.0;
      for (float& s : scores) sum += s = std::exp(s - max_score);
      float* o = out + static_cast<int64_t>(i) * q_row + h * d;
      std::fill(o, o + d, 0.0f);
      for (int p = first; p <= stop; ++p) {
        const float w = static_cast<float>(scores[static_cast<size_t>(p - first)] / sum);
        const float* vp = value(p);
        for (int x = 0; x < d; ++x) o[x] += w * vp[x];
      }
    }
  });

  // In position order, so a ring keeps the newest `window` positions.
  for (int i = 0; i < n; ++i) {
    std::memcpy(cache.Key(c.layer_index, seq, start + i), c.k + static_cast<int64_t>(i) * kv_row,
                sizeof(float) * static_cast<size_t>(kv_row));
    std::memcpy(cache.Value(c.layer_index, seq, start + i), c.v + static_cast<int64_t>(i) * kv_row,
                sizeof(float) * static_cast<size_t>(kv_row));
  }
}

}  // namespace gs::cpu
