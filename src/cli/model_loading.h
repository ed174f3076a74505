// Resolving --model and building a runner for it, shared by the commands that run the model.
#pragma once

#include <memory>
#include <string>

#include "runtime/cpu/cpu_runner.h"
#include "runtime/model_runner.h"

namespace gs::cli {

struct LoadedModel {
  std::string dir;
  std::unique_ptr<ModelRunner> runner;
};

// --model (directory or cached HF id) -> config, weights and a CPU runner whose KV cache holds
// one sequence of `max_tokens_in_kv` tokens. Progress and a summary go to stderr.
Expected<LoadedModel> LoadCpuModel(const std::string& model, int max_tokens_in_kv,
                                   const CpuRunnerOptions& options);

// The same on `device` ("cpu" or "cuda"). "cuda" in a build without CUDA is an error saying so.
// `with_vision` also binds the vision tower (image input; CPU runner only for now).
Expected<LoadedModel> LoadModel(const std::string& model, const std::string& device,
                                int max_tokens_in_kv, const CpuRunnerOptions& cpu_options,
                                bool with_vision = false);

// True when this binary was built with the CUDA runner.
bool BuiltWithCuda();

}  // namespace gs::cli
