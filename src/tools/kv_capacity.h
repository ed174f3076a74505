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

}  // namespace gs
