// gemmaserve kv-capacity's arithmetic on the real gemma-4-26B-A4B-it config, against the numbers
// worked out by hand from config.json (5 global layers: 2 KV heads x 512 dims, K and V; 25
// sliding layers: 8 KV heads x 256 dims, K and V, window 1024).
#include <gtest/gtest.h>

#include "model/config.h"
#include "tools/kv_capacity.h"

namespace gs {
namespace {

TEST(KvCapacity, Gemma4_26B_A4B_InTenGiB) {
  auto config = LoadModelConfig(std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it");
  ASSERT_TRUE(config.ok()) << config.error().message;
  KvCapacityOptions o;
  o.seq_lens = {4096, 32768};
  o.dtypes = {"bf16", "fp8"};
  o.snapshot_slots = {0, 8};
  const auto rows = ComputeKvCapacity(*config, o);
  ASSERT_EQ(rows.size(), 8u);
  const int64_t gib10 = int64_t{10} << 30;
  const int64_t global_bf16 = 5 * 2 * 2 * 512 * 2;    // 20480 B/token
  const int64_t ring_bf16 = 25 * 2 * 8 * 256 * 2 * 1024;  // 200 MiB per sequence slot
  // bf16, 4096 tokens, no snapshots.
  EXPECT_EQ(rows[0].bytes_per_sequence, 4096 * global_bf16 + ring_bf16);
  EXPECT_EQ(rows[0].sequences, gib10 / (4096 * global_bf16 + ring_bf16));  // 36
  EXPECT_EQ(rows[0].sequences, 36);
  // bf16, 4096, 8 snapshot slots taken from the same budget.
  EXPECT_EQ(rows[1].sequences, (gib10 - 8 * ring_bf16) / (4096 * global_bf16 + ring_bf16));
  // bf16, 32768.
  EXPECT_EQ(rows[2].sequences, gib10 / (32768 * global_bf16 + ring_bf16));  // 12
  // fp8 halves every byte.
  EXPECT_EQ(rows[4].bytes_per_sequence, (4096 * global_bf16 + ring_bf16) / 2);
  EXPECT_EQ(rows[6].sequences, gib10 / ((32768 * global_bf16 + ring_bf16) / 2));
}

// serve --device cuda: 137 slots (128 sequences + 8 snapshots + the runner's spare) of 200 MiB
// rings come first; the global pool gets the rest in 16-token blocks of 20480 B/token, less one
// spare block.
TEST(KvCapacity, ServePoolPlanOnAnH100Budget) {
  auto config = LoadModelConfig(std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it");
  ASSERT_TRUE(config.ok()) << config.error().message;
  const int64_t budget = int64_t{50} << 30;
  const KvPoolPlan plan = PlanKvPool(*config, 2, 16, 136, budget);
  const int64_t ring = 25 * 2 * 8 * 256 * 2 * 1024;
  EXPECT_EQ(plan.ring_bytes, ring);
  EXPECT_EQ(plan.rings_bytes, 137 * ring);
  EXPECT_EQ(plan.global_bytes_per_token, 20480);
  EXPECT_EQ(plan.num_global_blocks, (budget - 137 * ring) / (16 * 20480) - 1);
  EXPECT_EQ(plan.pool_tokens, plan.num_global_blocks * 16);
  // fp8 halves the rings and the per-token cost.
  EXPECT_EQ(PlanKvPool(*config, 1, 16, 136, budget).num_global_blocks,
            (budget - 137 * ring / 2) / (16 * 10240) - 1);
  // A budget below the rings leaves no pool.
  EXPECT_LE(PlanKvPool(*config, 2, 16, 136, 136 * ring).num_global_blocks, 0);
}

// Half of 80 GiB, 1 GiB held by others before start, 20 GiB runner, 0.5 GiB reserve.
TEST(KvCapacity, GpuMemoryUtilizationBudget) {
  const int64_t gib = int64_t{1} << 30;
  EXPECT_EQ(KvBudgetBytes(0.5, 80 * gib, 79 * gib, 20 * gib, gib / 2),
            40 * gib - 1 * gib - 20 * gib - gib / 2);
  EXPECT_LT(KvBudgetBytes(0.25, 80 * gib, 79 * gib, 20 * gib, gib / 2), 0);
}

}  // namespace
}  // namespace gs
