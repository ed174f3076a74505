#include "tools/kv_capacity.h"

#include <algorithm>
#include <cstdio>

#include "util/str.h"

namespace gs {
namespace {

struct PerToken {
  int64_t global = 0, sliding = 0;
};

PerToken BytesPerToken(const ModelConfig& c, int element_bytes) {
  PerToken p;
  for (int l = 0; l < c.num_layers; ++l) {
    const int64_t b = c.KvBytesPerToken(l, element_bytes);
    (c.layers[static_cast<size_t>(l)].kind == LayerKind::kGlobal ? p.global : p.sliding) += b;
  }
  return p;
}

}  // namespace

int KvElementBytes(const std::string& dtype) { return dtype == "fp8" ? 1 : 2; }

KvPoolPlan PlanKvPool(const ModelConfig& c, int element_bytes, int block_size, int slots,
                      int64_t budget_bytes) {
  const PerToken p = BytesPerToken(c, element_bytes);
  KvPoolPlan plan;
  plan.budget_bytes = budget_bytes;
  plan.global_bytes_per_token = p.global;
  plan.ring_bytes = p.sliding * c.sliding_window;
  plan.rings_bytes = plan.ring_bytes * (int64_t{slots} + 1);
  const int64_t block_bytes = p.global * block_size;
  if (block_bytes <= 0) return plan;  // no global layers: no pool to size
  const int64_t left = budget_bytes - plan.rings_bytes;
  plan.num_global_blocks = left > 0 ? left / block_bytes - 1 : -1;  // one spare block
  plan.pool_tokens = std::max<int64_t>(0, plan.num_global_blocks) * block_size;
  return plan;
}

int64_t KvBudgetBytes(double utilization, int64_t total_bytes, int64_t free_before_bytes,
                      int64_t runner_non_kv_bytes, int64_t reserve_bytes) {
  const int64_t allowed = static_cast<int64_t>(utilization * static_cast<double>(total_bytes));
  const int64_t used_before = total_bytes - free_before_bytes;
  return allowed - used_before - runner_non_kv_bytes - reserve_bytes;
}

std::vector<KvCapacityRow> ComputeKvCapacity(const ModelConfig& c, const KvCapacityOptions& o) {
  const int64_t budget = static_cast<int64_t>(o.budget_gib * 1024.0 * 1024.0 * 1024.0);
  std::vector<KvCapacityRow> rows;
  for (const std::string& dtype : o.dtypes) {
    const PerToken p = BytesPerToken(c, KvElementBytes(dtype));
    const int64_t ring = p.sliding * c.sliding_window;
    for (int64_t len : o.seq_lens) {
      for (int snaps : o.snapshot_slots) {
        KvCapacityRow r;
        r.dtype = dtype;
        r.seq_len = len;
        r.snapshot_slots = snaps;
        const int64_t blocks = (len + o.block_size - 1) / o.block_size;
        r.bytes_per_sequence = blocks * o.block_size * p.global + ring;
        r.snapshot_bytes = snaps * ring;
        const int64_t left = budget - r.snapshot_bytes;
        r.sequences = left > 0 ? left / r.bytes_per_sequence : 0;
        r.tokens = r.sequences * len;
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::string FormatKvCapacity(const ModelConfig& c, const KvCapacityOptions& o,
                             const std::vector<KvCapacityRow>& rows) {
  auto mib = [](int64_t b) {
    char s[32];
    std::snprintf(s, sizeof s, "%.1f", static_cast<double>(b) / (1024.0 * 1024.0));
    return std::string(s);
  };
  std::string out;
  for (const std::string& dtype : o.dtypes) {
    const PerToken p = BytesPerToken(c, KvElementBytes(dtype));
    out += StrCat(dtype, ": global layers (", c.num_layers_of(LayerKind::kGlobal), ") ",
                  p.global, " B/token; sliding layers (", c.num_layers_of(LayerKind::kSliding),
                  ") ", p.sliding, " B/token x window ", c.sliding_window, " = ",
                  mib(p.sliding * c.sliding_window), " MiB per sequence slot\n");
  }
  out += StrCat("\nKV budget ", o.budget_gib, " GiB, block size ", o.block_size, "\n\n");
  out += "| KV dtype | tokens/seq | snapshot slots | MiB per sequence | sequences that fit | "
         "tokens held |\n|---|---:|---:|---:|---:|---:|\n";
  for (const KvCapacityRow& r : rows) {
    out += StrCat("| ", r.dtype, " | ", r.seq_len, " | ", r.snapshot_slots, " | ",
                  mib(r.bytes_per_sequence), " | ", r.sequences, " | ", r.tokens, " |\n");
  }
  return out;
}

}  // namespace gs
