// serve --device cuda: loads the checkpoint (or not, --load-format dummy) and builds the CUDA
// runner with its KV pool sized from --gpu-memory-utilization (runtime/cuda/serving_runner.h).
#pragma once

#include <memory>
#include <string>

#include "cli/runner_factory.h"

namespace gs::cli {

// Bytes per KV element the CUDA runner stores for --kv-cache-dtype, or why it cannot: the one
// place that knows the CUDA runner's KV dtypes.
Expected<int> CudaKvElementBytes(const std::string& kv_cache_dtype);

#if GS_HAVE_CUDA
// Prints the weight load, the memory budget and the KV capacity (tokens, sequences) to stderr.
Expected<std::unique_ptr<ModelRunner>> MakeCudaServingRunner(const RunnerChoice& choice);
#endif

}  // namespace gs::cli
