#include "cli/model_loading.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/vision_weights.h"
#include "model/weights.h"
#include "runtime/generate.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace gs::cli {
namespace {

struct HostModel {
  std::string dir;
  ModelConfig config;
  Gemma4Weights weights;
};

Expected<HostModel> LoadHostModel(const std::string& model) {
  const auto t0 = std::chrono::steady_clock::now();
  HostModel m;
  GS_ASSIGN_OR_RETURN(m.dir, ResolveModelPath(model));
  GS_ASSIGN_OR_RETURN(m.config, LoadModelConfig(m.dir));
  GS_ASSIGN_OR_RETURN(m.weights, LoadGemma4Weights(m.config, m.dir));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "loaded %s in %.2f s: %d layers, %s%s\n", m.dir.c_str(), secs,
               m.config.num_layers, m.weights.Describe().c_str(),
               m.weights.skipped_tensors ? StrCat(", skipped ", m.weights.skipped_tensors,
                                                  " vision/audio tensors").c_str() : "");
  return m;
}

}  // namespace

bool BuiltWithCuda() {
#if GS_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

Expected<LoadedModel> LoadCpuModel(const std::string& model, int max_tokens_in_kv,
                                   const CpuRunnerOptions& options) {
  return LoadModel(model, "cpu", max_tokens_in_kv, options);
}

Expected<LoadedModel> LoadModel(const std::string& model, const std::string& device,
                                int max_tokens_in_kv, const CpuRunnerOptions& cpu_options,
                                bool with_vision) {
  if (device != "cpu" && device != "cuda") {
    return MakeError("--device '", device, "' is not one of cpu, cuda");
  }
  if (device == "cuda" && !BuiltWithCuda()) {
    return MakeError("--device cuda: this gemmaserve was built without CUDA (nvcc was not found "
                     "when it was configured); rebuild with the CUDA toolkit or use --device cpu");
  }
  GS_ASSIGN_OR_RETURN(HostModel host, LoadHostModel(model));
  LoadedModel loaded;
  loaded.dir = host.dir;
  const KvCacheSpec spec = KvSpecForSingleSequence(max_tokens_in_kv);
  if (device == "cpu") {
    std::optional<VisionWeights> vision;
    if (with_vision) {
      GS_ASSIGN_OR_RETURN(vision, BindVisionWeights(host.config, host.weights.store));
    }
    auto runner = std::make_unique<CpuRunner>(std::move(host.config), std::move(host.weights),
                                              spec, cpu_options);
    if (vision) GS_RETURN_IF_ERROR(runner->AttachVision(std::move(*vision)));
    loaded.runner = std::move(runner);
    return loaded;
  }
#if GS_HAVE_CUDA
  const auto t0 = std::chrono::steady_clock::now();
  GS_ASSIGN_OR_RETURN(auto runner, CreateCudaRunner(host.config, host.weights, spec));
  if (with_vision && !runner->supports_vision()) {
    return MakeError(model, ": image input needs the checkpoint's vision tower, which was not "
                     "loaded (see the note above)");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "uploaded %.2f GB of weights to %s in %.2f s\n",
               static_cast<double>(runner->weight_bytes()) / 1e9, runner->device_name().c_str(),
               secs);
  loaded.runner = std::move(runner);
#endif
  return loaded;
}

}  // namespace gs::cli
