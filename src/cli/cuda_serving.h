// serve --device cuda: the CUDA runner from a checkpoint (or random weights, --load-format dummy)
// with its KV pool sized from --gpu-memory-utilization. Only built with CUDA (GS_HAVE_CUDA).
#pragma once

#include <memory>

#include "cli/runner_factory.h"

namespace gs::cli {

#if GS_HAVE_CUDA
// Sizing (vLLM's semantics, kv_capacity.h KvBudgetBytes): a probe runner with a small pool runs
// the largest prefill step (max_num_batched_tokens) and the largest decode step (max_num_seqs
// rows of logits) eagerly; what it used beyond its KV is the runner's non-KV memory (weights,
// activations, workspaces). The probe is then freed and the real runner built with every KV slot's
// sliding rings plus a global pool of what the budget has left. Prints the budget and the
// capacity in tokens and sequences.
Expected<std::unique_ptr<ModelRunner>> MakeCudaServingRunner(const RunnerChoice& choice);
#endif

// Bytes per KV element the CUDA runner stores for --kv-cache-dtype, or why it cannot. The one
// place that knows the CUDA runner's KV dtypes.
Expected<int> CudaKvElementBytes(const std::string& kv_cache_dtype);

}  // namespace gs::cli
