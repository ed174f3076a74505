#include "cli/cuda_serving.h"

#include <chrono>
#include <cstdio>

#include "model/weights.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/serving_runner.h"
#endif

namespace gs::cli {

Expected<int> CudaKvElementBytes(const std::string& dtype) {
  // BF16 K/V, or FP8 E4M3 with an fp32 scale per (token, kv head) (serving_runner.cpp counts the
  // scales when it sizes the pool).
  if (dtype == "fp8") return 1;
  if (dtype == "auto" || dtype == "bf16") return 2;
  return MakeError("--kv-cache-dtype ", dtype, ": expected auto, bf16 or fp8");
}

#if GS_HAVE_CUDA
Expected<std::unique_ptr<ModelRunner>> MakeCudaServingRunner(const RunnerChoice& c) {
  CudaServingOptions o;
  GS_ASSIGN_OR_RETURN(o.kv_element_bytes, CudaKvElementBytes(c.kv_cache_dtype));
  std::string why;
  if (CudaDeviceCount(&why) == 0) return MakeError("--device cuda: no usable GPU (", why, ")");
  o.gpu_memory_utilization = c.gpu_memory_utilization;
  o.kv_cache_tokens = c.kv_cache_tokens;
  o.enforce_eager = c.enforce_eager;
  o.max_num_seqs = c.max_num_seqs;
  o.max_num_batched_tokens = c.max_num_batched_tokens;
  o.max_model_len = c.max_model_len;
  Gemma4Weights weights;
  if (!c.dummy_weights) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "loading weights from %s ...\n", c.model_dir.c_str());
    GS_ASSIGN_OR_RETURN(weights, LoadGemma4Weights(c.config, c.model_dir));
    std::fprintf(stderr, "loaded in %.2f s: %d layers, %s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 c.config.num_layers, weights.Describe().c_str());
  }
  if (c.kv_cache_tokens <= 0) {
    std::fprintf(stderr, "probing GPU memory (weights + largest step) ...\n");
  }
  std::string report;
  auto runner = CreateServingCudaRunner(c.config, c.dummy_weights ? nullptr : &weights, c.kv_spec,
                                        o, &report);
  std::fputs(report.c_str(), stderr);
  if (!runner) return runner.error();
  return std::unique_ptr<ModelRunner>(std::move(*runner));
}
#endif  // GS_HAVE_CUDA

}  // namespace gs::cli
