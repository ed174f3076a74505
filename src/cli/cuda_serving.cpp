#include "cli/cuda_serving.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "tools/kv_capacity.h"
#include "util/str.h"
#if GS_HAVE_CUDA
#include "model/weights.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/gpu_memory.h"
#endif

namespace gs::cli {

Expected<int> CudaKvElementBytes(const std::string& dtype) {
  // The CUDA runner keeps K and V in BF16. When its FP8 KV cache lands, return 1 for "fp8" here
  // (and pass the dtype in CudaRunnerOptions below).
  if (dtype == "fp8") {
    return MakeError("--kv-cache-dtype fp8: the CUDA runner has no FP8 KV cache yet; use "
                     "--kv-cache-dtype auto or bf16");
  }
  if (dtype == "auto" || dtype == "bf16") return 2;
  return MakeError("--kv-cache-dtype ", dtype, ": expected auto, bf16 or fp8");
}

#if GS_HAVE_CUDA
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Kept back from the KV budget for CUDA graphs (one per decode bucket), allocator rounding and
// fragmentation, which the eager probe does not see.
constexpr int64_t kReserveBytes = int64_t{1} << 30;

double Gib(int64_t bytes) { return static_cast<double>(bytes) / kGiB; }

using MakeFn = std::function<Expected<std::unique_ptr<CudaRunner>>(const KvCacheSpec&, bool eager)>;

// One sequence of `tokens` prompt tokens in slot 0 (logits of its last token).
Batch PrefillBatch(int tokens, int block_size) {
  Batch b;
  b.token_ids.assign(static_cast<size_t>(tokens), 2);
  BatchSequence s;
  s.slot = 0;
  s.num_tokens = tokens;
  for (int i = 0; i * block_size < tokens; ++i) s.block_table.push_back(i);
  b.sequences.push_back(s);
  b.logits_indices.push_back(tokens - 1);
  return b;
}

// `n` sequences of one token each (slots 0..n-1, block i), logits of all.
Batch DecodeBatch(int n) {
  Batch b;
  for (int i = 0; i < n; ++i) {
    b.token_ids.push_back(2);
    BatchSequence s;
    s.slot = i;
    s.first_token = i;
    s.num_tokens = 1;
    s.block_table = {i};
    b.sequences.push_back(s);
    b.logits_indices.push_back(i);
  }
  return b;
}

// Bytes of K and V the runner allocates for `spec` (with its spare slot and block).
int64_t KvAllocationBytes(const ModelConfig& c, const KvCacheSpec& spec, int element_bytes) {
  const KvPoolPlan p = PlanKvPool(c, element_bytes, spec.block_size, spec.max_sequences, 0);
  return p.rings_bytes +
         p.global_bytes_per_token * spec.block_size * (int64_t{spec.num_global_blocks} + 1);
}

// Runs the probe; returns the runner's memory besides KV.
Expected<int64_t> ProbeNonKvBytes(const RunnerChoice& c, const MakeFn& make, int element_bytes,
                                  const GpuMemoryInfo& before) {
  const int block = c.kv_spec.block_size;
  const int prefill = std::max(1, std::min(c.max_num_batched_tokens,
                                           c.config.max_position_embeddings));
  const int decode = std::max(1, std::min({c.max_num_seqs, c.max_num_batched_tokens,
                                           c.kv_spec.max_sequences}));
  KvCacheSpec probe = c.kv_spec;
  probe.num_global_blocks = std::max((prefill + block - 1) / block, decode);
  int64_t after_free = 0;
  {
    GS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunner> runner, make(probe, /*eager=*/true));
    std::vector<float> logits;
    GS_RETURN_IF_ERROR(runner->Forward(PrefillBatch(prefill, block), &logits));
    GS_RETURN_IF_ERROR(runner->Forward(DecodeBatch(decode), &logits));
    GS_ASSIGN_OR_RETURN(GpuMemoryInfo m, QueryGpuMemory());
    after_free = m.free_bytes;
  }
  const int64_t used = before.free_bytes - after_free;
  return std::max<int64_t>(0, used - KvAllocationBytes(c.config, probe, element_bytes));
}

}  // namespace

Expected<std::unique_ptr<ModelRunner>> MakeCudaServingRunner(const RunnerChoice& c) {
  GS_ASSIGN_OR_RETURN(const int element_bytes, CudaKvElementBytes(c.kv_cache_dtype));
  std::string why;
  if (CudaDeviceCount(&why) == 0) return MakeError("--device cuda: no usable GPU (", why, ")");
  GS_ASSIGN_OR_RETURN(GpuMemoryInfo before, QueryGpuMemory());

  Gemma4Weights weights;
  if (!c.dummy_weights) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "loading weights from %s ...\n", c.model_dir.c_str());
    GS_ASSIGN_OR_RETURN(weights, LoadGemma4Weights(c.config, c.model_dir));
    std::fprintf(stderr, "loaded in %.2f s: %d layers, %s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 c.config.num_layers, weights.Describe().c_str());
  }
  const MakeFn make = [&](const KvCacheSpec& spec, bool eager)
      -> Expected<std::unique_ptr<CudaRunner>> {
    CudaRunnerOptions o;
    o.enforce_eager = eager;
    if (c.dummy_weights) return CreateDummyCudaRunner(c.config, spec, o);
    return CreateCudaRunner(c.config, weights, spec, o);
  };

  KvCacheSpec spec = c.kv_spec;
  const int block = spec.block_size;
  if (c.kv_cache_tokens > 0) {
    spec.num_global_blocks = (c.kv_cache_tokens + block - 1) / block;
    std::fprintf(stderr, "KV pool: --kv-cache-tokens %d (not sized from "
                 "--gpu-memory-utilization)\n", c.kv_cache_tokens);
  } else {
    std::fprintf(stderr, "probing GPU memory (weights + largest step) ...\n");
    GS_ASSIGN_OR_RETURN(const int64_t non_kv, ProbeNonKvBytes(c, make, element_bytes, before));
    const int64_t budget = KvBudgetBytes(c.gpu_memory_utilization, before.total_bytes,
                                         before.free_bytes, non_kv, kReserveBytes);
    const KvPoolPlan plan = PlanKvPool(c.config, element_bytes, block, spec.max_sequences, budget);
    std::fprintf(stderr,
                 "GPU memory: %.2f GiB total, %.2f GiB in use before loading; "
                 "--gpu-memory-utilization %.2f allows %.2f GiB; model runner %.2f GiB "
                 "(weights, activations, workspaces); reserve %.2f GiB; KV budget %.2f GiB\n",
                 Gib(before.total_bytes), Gib(before.total_bytes - before.free_bytes),
                 c.gpu_memory_utilization, c.gpu_memory_utilization * Gib(before.total_bytes),
                 Gib(non_kv), Gib(kReserveBytes), Gib(budget));
    const int64_t needed = (std::max(c.max_model_len, 1) + block - 1) / block;
    if (plan.num_global_blocks < needed) {
      return MakeError(
          "--gpu-memory-utilization ", c.gpu_memory_utilization, ": the KV budget of ",
          StrCat(Gib(budget)), " GiB does not hold the sliding rings of ", spec.max_sequences,
          " KV slots (", Gib(plan.rings_bytes), " GiB incl. a spare; lower --max-num-seqs or "
          "--prefix-snapshots) plus ", needed, " global blocks (raise the utilization or lower "
          "--max-model-len)");
    }
    spec.num_global_blocks = static_cast<int>(std::min<int64_t>(plan.num_global_blocks, 1 << 30));
  }
  const KvPoolPlan built = PlanKvPool(c.config, element_bytes, block, spec.max_sequences, 0);
  const int64_t pool_tokens = int64_t{spec.num_global_blocks} * block;
  const int64_t len = c.max_model_len > 0
                          ? c.max_model_len
                          : std::min<int64_t>(pool_tokens, c.config.max_position_embeddings);
  std::fprintf(stderr,
               "KV cache (%s): global pool %d blocks x %d = %lld tokens (%.2f GiB at %lld B/token) "
               "+ sliding rings %d slots x %.0f MiB (%.2f GiB)\n"
               "KV capacity: %lld tokens = %lld sequences of max_model_len %lld "
               "(per-token costs as `gemmaserve kv-capacity --kv-cache-dtype %s`)\n",
               element_bytes == 1 ? "fp8" : "bf16", spec.num_global_blocks, block,
               static_cast<long long>(pool_tokens),
               Gib(pool_tokens * built.global_bytes_per_token),
               static_cast<long long>(built.global_bytes_per_token), spec.max_sequences,
               static_cast<double>(built.ring_bytes) / (1024.0 * 1024.0), Gib(built.rings_bytes),
               static_cast<long long>(pool_tokens), static_cast<long long>(pool_tokens / len),
               static_cast<long long>(len), element_bytes == 1 ? "fp8" : "bf16");

  const auto t0 = std::chrono::steady_clock::now();
  GS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunner> runner, make(spec, c.enforce_eager));
  std::fprintf(stderr, "%s %.2f GB of weights on %s in %.2f s; decode %s\n",
               c.dummy_weights ? "generated" : "uploaded",
               static_cast<double>(runner->weight_bytes()) / 1e9, runner->device_name().c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               c.enforce_eager ? "eager (--enforce-eager)" : "with CUDA graphs per batch bucket");
  return std::unique_ptr<ModelRunner>(std::move(runner));
}
#endif  // GS_HAVE_CUDA

}  // namespace gs::cli
