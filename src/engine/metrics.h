// What the engine reports for /metrics: gauges, counters and latency histograms, as one snapshot
// struct the server formats (Prometheus text) without knowing the engine's insides.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/request.h"

namespace gs {

struct Histogram {
  Histogram() = default;
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);

  std::vector<double> bounds;    // ascending upper bounds; a last +Inf bucket is implied
  std::vector<uint64_t> counts;  // per bucket, not cumulative: bounds.size() + 1 entries
  double sum = 0.0;
  uint64_t count = 0;
};

struct EngineMetrics {
  EngineMetrics();

  // Gauges.
  int num_running_seqs = 0;
  int num_waiting_seqs = 0;       // incl. preempted ones
  int num_waiting_requests = 0;   // submitted, not started yet (the bounded queue)
  int kv_blocks_used = 0;         // global-layer blocks held by sequences
  int kv_blocks_total = 0;
  int kv_blocks_cached = 0;       // registered in the prefix cache (used or not)
  int prefix_snapshots = 0;       // sliding-state snapshots held

  // Counters.
  uint64_t prefix_cache_queries = 0;  // tokens looked up when a sequence starts
  uint64_t prefix_cache_hits = 0;     // of which served from the cache
  uint64_t prompt_tokens = 0;         // per request, counted once when it starts
  uint64_t generation_tokens = 0;
  uint64_t computed_tokens = 0;       // tokens run through the model (prefill incl. recompute)
  uint64_t preemptions = 0;
  uint64_t images_encoded = 0;        // vision-encoder runs (again after a preemption)
  uint64_t steps = 0;
  std::array<uint64_t, 5> finished_sequences{};  // indexed by FinishReason

  // Seconds per request (ttft, queue, e2e) and per generated token after the first (inter_token).
  Histogram ttft_seconds, inter_token_seconds, e2e_seconds, queue_seconds;
};

}  // namespace gs
