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
  // CPU: the spec to build. CUDA: max_sequences and block_size are kept; num_global_blocks is
  // sized from gpu_memory_utilization unless kv_cache_tokens is set.
  KvCacheSpec kv_spec;
  int threads = 0;                    // CPU threads (0 = all cores)
  double gpu_memory_utilization = 0.9;  // CUDA only
  std::string kv_cache_dtype = "auto";  // auto | bf16 | fp8
  // CUDA only:
  bool dummy_weights = false;         // --load-format dummy: random weights of the config's shapes
  bool enforce_eager = false;         // no CUDA graphs for decode steps
  int kv_cache_tokens = 0;            // > 0: global KV pool size in tokens (skips the sizing)
  int max_num_seqs = 32;              // the largest decode step (memory probe)
  int max_num_batched_tokens = 2048;  // the largest prefill step (memory probe)
  int max_model_len = 0;              // for the capacity line (0: what the pool allows)
};

// Loads the weights for the device and builds its runner; prints load and KV lines to stderr.
// The runner's kv_spec() is what was built (on CUDA it differs from choice.kv_spec).
Expected<std::unique_ptr<ModelRunner>> MakeRunner(const RunnerChoice& choice);

}  // namespace gs::cli
