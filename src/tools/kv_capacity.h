// How many sequences fit in a KV budget with the engine's layout (kv_cache.h): global layers
// paged per token (blocks of block_size), sliding layers a ring of sliding_window positions per
// KV slot whatever the sequence length, plus the prefix-cache snapshot slots, which are rings
// taken from the same memory. `gemmaserve kv-capacity` prints it as a table (docs/benchmarks.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace gs {

struct KvCapacityRow {
  std::string dtype;      // bf16 | fp8
  int64_t seq_len = 0;    // tokens per sequence
  int snapshot_slots = 0;
  int64_t bytes_per_sequence = 0;  // global blocks for seq_len + one sliding ring
  int64_t snapshot_bytes = 0;
  int64_t sequences = 0;           // that fit in the budget
  int64_t tokens = 0;              // sequences x seq_len
};

struct KvCapacityOptions {
  double budget_gib = 10.0;
  std::vector<int64_t> seq_lens = {4096, 32768};
  std::vector<std::string> dtypes = {"bf16", "fp8"};
  std::vector<int> snapshot_slots = {0, 8};
  int block_size = 16;
};

std::vector<KvCapacityRow> ComputeKvCapacity(const ModelConfig& config,
                                             const KvCapacityOptions& options);
// A markdown table of the rows plus the per-token costs it rests on.
std::string FormatKvCapacity(const ModelConfig& config, const KvCapacityOptions& options,
                             const std::vector<KvCapacityRow>& rows);

// How `serve --device cuda` splits a KV budget (bytes): every KV slot (max_num_seqs + snapshot
// slots) gets its sliding-layer ring, plus one spare ring and one spare global block (the CUDA
// runner pads decode buckets with them); the global-layer pool gets the rest, in whole blocks.
struct KvPoolPlan {
  int64_t budget_bytes = 0;
  int64_t global_bytes_per_token = 0;  // all global layers, K and V
  int64_t ring_bytes = 0;              // one slot's sliding rings
  int64_t rings_bytes = 0;             // (slots + 1) rings
  int64_t num_global_blocks = 0;       // <= 0: the budget does not cover the rings and a block
  int64_t pool_tokens = 0;             // num_global_blocks x block_size
};
KvPoolPlan PlanKvPool(const ModelConfig& config, int element_bytes, int block_size, int slots,
                      int64_t budget_bytes);

// vLLM's --gpu-memory-utilization: the process may hold utilization x total GPU memory; what the
// model runner needs besides KV (weights, activations of the largest step, workspaces; measured)
// and what was in use before it started (other processes, the CUDA context) are not available to
// KV; `reserve` is kept back for CUDA graphs and fragmentation. Negative: nothing is left.
int64_t KvBudgetBytes(double utilization, int64_t total_bytes, int64_t free_before_bytes,
                      int64_t runner_non_kv_bytes, int64_t reserve_bytes);

// KV element size of a --kv-cache-dtype name: fp8 1, auto/bf16 2.
int KvElementBytes(const std::string& dtype);

}  // namespace gs
