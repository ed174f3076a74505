// The one place a serving command picks its ModelRunner by --device. The CUDA runner plugs in
// here (MakeRunner's "cuda" branch) once it exists; everything above it (engine, server) is the
// same for both devices.
#pragma once

#include <memory>
#include <string>

#include "model/config.h"
#include "runtime/model_runner.h"
#include "util/status.h"

namespace gs::cli {

struct RunnerChoice {
  std::string device = "cpu";         // cpu | cuda
  std::string model_dir;
  ModelConfig config;                 // with generation_config applied
  KvCacheSpec kv_spec;
  int threads = 0;                    // CPU threads (0 = all cores)
  double gpu_memory_utilization = 0.9;  // CUDA only
  std::string kv_cache_dtype = "auto";  // auto | bf16 | fp8
};

// Loads the weights for the device and builds its runner; prints a load line to stderr.
Expected<std::unique_ptr<ModelRunner>> MakeRunner(const RunnerChoice& choice);

}  // namespace gs::cli
