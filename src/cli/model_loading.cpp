#include "cli/model_loading.h"

#include <chrono>
#include <cstdio>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/generate.h"

namespace gs::cli {

Expected<LoadedModel> LoadCpuModel(const std::string& model, int max_tokens_in_kv,
                                   const CpuRunnerOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel loaded;
  GS_ASSIGN_OR_RETURN(loaded.dir, ResolveModelPath(model));
  GS_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(loaded.dir));
  GS_ASSIGN_OR_RETURN(Gemma4Weights weights, LoadGemma4Weights(config, loaded.dir));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "loaded %s in %.2f s: %d layers, %s%s\n", loaded.dir.c_str(), secs,
               config.num_layers, weights.Describe().c_str(),
               weights.skipped_tensors ? StrCat(", skipped ", weights.skipped_tensors,
                                                " vision/audio tensors").c_str() : "");
  loaded.runner = std::make_unique<CpuRunner>(std::move(config), std::move(weights),
                                              KvSpecForSingleSequence(max_tokens_in_kv), options);
  return loaded;
}

}  // namespace gs::cli
