// The CUDA runner for serving (`serve --device cuda`): built from loaded weights or random ones
// (--load-format dummy), with the KV pool sized from --gpu-memory-utilization the way vLLM sizes
// it. Plain C++ header (no CUDA types); only built with CUDA.
#pragma once

#include <memory>
#include <string>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/cuda/cuda_runner.h"

namespace gs {

struct CudaServingOptions {
  double gpu_memory_utilization = 0.9;
  int kv_cache_tokens = 0;            // > 0: the global pool size in tokens, no sizing
  int kv_element_bytes = 2;           // 2 = bf16, 1 = fp8 e4m3 (+ fp32 scales per row and head)
  bool enforce_eager = false;         // no CUDA graphs for decode steps
  int max_num_seqs = 32;              // the largest decode step (memory probe)
  int max_num_batched_tokens = 2048;  // the largest prefill step (memory probe)
  int max_model_len = 0;              // the pool must hold one such sequence (0: one block)
  uint64_t dummy_seed = 1;
};

// KV memory kept back from the budget for what the eager probe does not see: CUDA graphs (one per
// decode bucket), allocator rounding, fragmentation.
constexpr int64_t kCudaServingReserveBytes = int64_t{1} << 30;

// `weights` null: random weights of the config's shapes (CreateDummyCudaRunner). `spec` gives the
// KV slots and block size; its num_global_blocks is replaced. Sizing (kv_capacity.h KvBudgetBytes
// and PlanKvPool): a probe runner with a small pool runs the largest prefill step and the largest
// decode step eagerly, and with a vision encoder the largest encoder pass the engine makes
// (vision/encode_groups.h: 8 images, 20160 patches; the encoder keeps that scratch); what it used
// beyond its own KV is the runner's non-KV memory (weights, activations, workspaces, vision
// scratch). The probe is freed and the real runner built with every slot's sliding
// rings plus a global pool of what the budget leaves. Appends human-readable lines (the budget,
// the capacity in tokens and sequences) to `report`.
Expected<std::unique_ptr<CudaRunner>> CreateServingCudaRunner(const ModelConfig& config,
                                                              const Gemma4Weights* weights,
                                                              KvCacheSpec spec,
                                                              const CudaServingOptions& options,
                                                              std::string* report);

}  // namespace gs
