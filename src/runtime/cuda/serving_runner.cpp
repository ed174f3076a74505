#include "runtime/cuda/serving_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <functional>

#include "runtime/cuda/gpu_memory.h"
#include "tools/kv_capacity.h"
#include "vision/encode_groups.h"
#include "util/str.h"

namespace gs {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

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

std::string Line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Line(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return std::string(buf) + "\n";
}

// What the probe measured.
struct ProbeResult {
  int64_t non_kv = 0;          // the runner's memory besides KV, vision scratch included
  int64_t vision_scratch = 0;  // of it: the encoder's scratch for the largest pass (0: no vision)
  int vision_images = 0, vision_patches = 0;  // that pass
};

// Runs the probe: the largest prefill step, the largest decode step and, with a vision encoder,
// the largest encoder pass the engine makes (vision/encode_groups.h); the encoder keeps its
// scratch, as the serving runner will once images arrive, so the KV pool is sized around it.
Expected<ProbeResult> ProbeNonKvBytes(const ModelConfig& config, const KvCacheSpec& spec,
                                      const CudaServingOptions& o, const MakeFn& make,
                                      const GpuMemoryInfo& before) {
  const int block = spec.block_size;
  const int prefill = std::max(1, std::min(o.max_num_batched_tokens,
                                           config.max_position_embeddings));
  const int decode = std::max(1, std::min({o.max_num_seqs, o.max_num_batched_tokens,
                                           spec.max_sequences}));
  KvCacheSpec probe = spec;
  probe.num_global_blocks = std::max((prefill + block - 1) / block, decode);
  ProbeResult r;
  int64_t after_free = 0;
  {
    GS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunner> runner, make(probe, /*eager=*/true));
    std::vector<float> logits;
    GS_RETURN_IF_ERROR(runner->Forward(PrefillBatch(prefill, block), &logits));
    GS_RETURN_IF_ERROR(runner->Forward(DecodeBatch(decode), &logits));
    if (runner->supports_vision() && config.vision) {
      GS_ASSIGN_OR_RETURN(GpuMemoryInfo m0, QueryGpuMemory());
      const std::vector<ProcessedImage> images = WorstCaseEncodePass(*config.vision);
      std::vector<const ProcessedImage*> pass;
      for (const ProcessedImage& img : images) {
        pass.push_back(&img);
        r.vision_patches += img.num_patches();
      }
      r.vision_images = static_cast<int>(pass.size());
      auto soft = runner->EncodeImages(pass);
      if (!soft.ok()) {
        return MakeError("memory probe: vision encoder pass of ", pass.size(), " images (",
                         r.vision_patches, " patches): ", soft.error().message);
      }
      GS_ASSIGN_OR_RETURN(GpuMemoryInfo m1, QueryGpuMemory());
      r.vision_scratch = std::max<int64_t>(0, m0.free_bytes - m1.free_bytes);
    }
    GS_ASSIGN_OR_RETURN(GpuMemoryInfo m, QueryGpuMemory());
    after_free = m.free_bytes;
  }
  const int64_t used = before.free_bytes - after_free;
  r.non_kv = std::max<int64_t>(0, used - KvAllocationBytes(config, probe, o.kv_element_bytes));
  return r;
}

}  // namespace

Expected<std::unique_ptr<CudaRunner>> CreateServingCudaRunner(const ModelConfig& config,
                                                              const Gemma4Weights* weights,
                                                              KvCacheSpec spec,
                                                              const CudaServingOptions& o,
                                                              std::string* report) {
  std::string unused;
  std::string& out = report ? *report : unused;
  const int eb = o.kv_element_bytes;
  const char* dtype = eb == 1 ? "fp8" : "bf16";
  const MakeFn make = [&](const KvCacheSpec& s, bool eager)
      -> Expected<std::unique_ptr<CudaRunner>> {
    CudaRunnerOptions ro;
    ro.enforce_eager = eager;
    ro.kv_cache_dtype = dtype;
    if (!weights) return CreateDummyCudaRunner(config, s, ro, o.dummy_seed);
    return CreateCudaRunner(config, *weights, s, ro);
  };
  const int block = spec.block_size;
  if (o.kv_cache_tokens > 0) {
    spec.num_global_blocks = (o.kv_cache_tokens + block - 1) / block;
    out += Line("KV pool: --kv-cache-tokens %d (not sized from --gpu-memory-utilization)",
                o.kv_cache_tokens);
  } else {
    GS_ASSIGN_OR_RETURN(const GpuMemoryInfo before, QueryGpuMemory());
    GS_ASSIGN_OR_RETURN(const ProbeResult probed, ProbeNonKvBytes(config, spec, o, make, before));
    const int64_t non_kv = probed.non_kv;
    int64_t budget = KvBudgetBytes(o.gpu_memory_utilization, before.total_bytes,
                                   before.free_bytes, non_kv, kCudaServingReserveBytes);
    if (eb == 1) {  // FP8 rows carry a 4-byte scale per kv head: d + 4 bytes per d values
      int min_d = 1 << 30;
      for (const LayerConfig& lc : config.layers) min_d = std::min(min_d, lc.head_dim);
      budget = budget / (min_d + 4) * min_d;
    }
    const KvPoolPlan plan = PlanKvPool(config, eb, block, spec.max_sequences, budget);
    out += Line("GPU memory: %.2f GiB total, %.2f GiB in use before loading; "
                "--gpu-memory-utilization %.2f allows %.2f GiB; model runner %.2f GiB (weights, "
                "activations, workspaces; measured by a probe step); reserve %.2f GiB; "
                "KV budget %.2f GiB",
                Gib(before.total_bytes), Gib(before.total_bytes - before.free_bytes),
                o.gpu_memory_utilization, o.gpu_memory_utilization * Gib(before.total_bytes),
                Gib(non_kv), Gib(kCudaServingReserveBytes), Gib(budget));
    if (probed.vision_images > 0) {
      out += Line("Vision encoder scratch: %.2f GiB for its largest pass (%d images, %d patches; "
                  "measured by the probe, inside the model runner's share)",
                  Gib(probed.vision_scratch), probed.vision_images, probed.vision_patches);
    }
    const int64_t needed = (std::max(o.max_model_len, 1) + block - 1) / block;
    if (plan.num_global_blocks < needed) {
      return MakeError("--gpu-memory-utilization ", o.gpu_memory_utilization, ": the KV budget (",
                       StrCat(Gib(budget)), " GiB) does not hold the sliding rings of ",
                       spec.max_sequences, " KV slots (", Gib(plan.rings_bytes),
                       " GiB; lower --max-num-seqs or --prefix-snapshots) plus ", needed,
                       " global blocks for --max-model-len (raise the utilization or lower it)");
    }
    // More than every slot at full length only serves the prefix cache; a small model on a big
    // GPU would otherwise get a pool of billions of tokens (and the engine's block table of it).
    const int64_t cap_blocks = (int64_t{spec.max_sequences} * config.max_position_embeddings +
                                block - 1) / block;
    spec.num_global_blocks = static_cast<int>(
        std::min<int64_t>({plan.num_global_blocks, cap_blocks, int64_t{1} << 30}));
    if (spec.num_global_blocks < plan.num_global_blocks) {
      out += Line("KV pool capped at %d slots x max_position_embeddings %d (the budget allows "
                  "%lld blocks)", spec.max_sequences, config.max_position_embeddings,
                  static_cast<long long>(plan.num_global_blocks));
    }
  }
  const KvPoolPlan built = PlanKvPool(config, eb, block, spec.max_sequences, 0);
  const int64_t pool_tokens = int64_t{spec.num_global_blocks} * block;
  const int64_t len = o.max_model_len > 0
                          ? o.max_model_len
                          : std::min<int64_t>(pool_tokens, config.max_position_embeddings);
  out += Line("KV cache (%s): global pool %d blocks x %d = %lld tokens (%.2f GiB at %lld "
              "B/token) + sliding rings %d slots x %.1f MiB (%.2f GiB)",
              dtype, spec.num_global_blocks, block, static_cast<long long>(pool_tokens),
              Gib(pool_tokens * built.global_bytes_per_token),
              static_cast<long long>(built.global_bytes_per_token), spec.max_sequences,
              static_cast<double>(built.ring_bytes) / (1024.0 * 1024.0), Gib(built.rings_bytes));
  out += Line("KV capacity: %lld tokens = %lld sequences of max_model_len %lld, %d running at "
              "once (per-token costs as `gemmaserve kv-capacity --kv-cache-dtype %s`)",
              static_cast<long long>(pool_tokens), static_cast<long long>(pool_tokens / len),
              static_cast<long long>(len), o.max_num_seqs, dtype);
  const auto t0 = std::chrono::steady_clock::now();
  GS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunner> runner, make(spec, o.enforce_eager));
  out += Line("%s %.2f GB of weights on %s in %.2f s; decode %s", weights ? "uploaded" : "generated",
              static_cast<double>(runner->weight_bytes()) / 1e9, runner->device_name().c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              o.enforce_eager ? "eager (--enforce-eager)" : "with CUDA graphs per batch bucket");
  return runner;
}

}  // namespace gs
