#include "cli/runner_factory.h"

#include <chrono>
#include <cstdio>

#include <optional>

#include "model/vision_weights.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#if GS_HAVE_CUDA
#include "cli/cuda_serving.h"
#endif

namespace gs::cli {
namespace {

Expected<std::unique_ptr<ModelRunner>> MakeCpuRunner(const RunnerChoice& c) {
  if (c.kv_cache_dtype == "fp8") {
    return MakeError("--kv-cache-dtype fp8: the CPU runner keeps its KV cache in fp32 and has no "
                     "fp8 KV path; use auto or bf16 on --device cpu");
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "loading weights from %s ...\n", c.model_dir.c_str());
  GS_ASSIGN_OR_RETURN(Gemma4Weights weights, LoadGemma4Weights(c.config, c.model_dir));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "loaded in %.2f s: %d layers, %s\n", secs, c.config.num_layers,
               weights.Describe().c_str());
  // The vision tower, when the checkpoint has one: image input then works through the API.
  std::optional<VisionWeights> vision;
  if (c.config.vision) {
    auto bound = BindVisionWeights(c.config, weights.store);
    if (bound.ok()) {
      vision = std::move(*bound);
    } else {
      std::fprintf(stderr, "image input off: %s\n", bound.error().message.c_str());
    }
  }
  auto runner = std::make_unique<CpuRunner>(c.config, std::move(weights), c.kv_spec,
                                            CpuRunnerOptions{c.threads, 0.0f});
  if (vision) GS_RETURN_IF_ERROR(runner->AttachVision(std::move(*vision)));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

}  // namespace

Expected<std::unique_ptr<ModelRunner>> MakeRunner(const RunnerChoice& c) {
  if (c.device == "cpu" && c.dummy_weights) {
    return MakeError("--load-format dummy: random weights exist for --device cuda only");
  }
  if (c.device == "cpu") return MakeCpuRunner(c);
  if (c.device == "cuda") {
#if GS_HAVE_CUDA
    return MakeCudaServingRunner(c);
#else
    return MakeError("--device cuda: this gemmaserve was built without CUDA "
                     "(cmake -DGS_WITH_CUDA=ON with nvcc); use --device cpu");
#endif
  }
  return MakeError("--device ", c.device, ": expected cpu or cuda");
}

}  // namespace gs::cli
