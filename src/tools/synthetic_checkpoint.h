// `gemmaserve make-demo-model --config FILE --format ct|bf16`: a random-content checkpoint with
// the exact tensor names, dtypes and shapes a real Gemma 4 config calls for (text model only; no
// vision tower), in compressed-tensors NVFP4 (RedHatAI layout: per-expert modules, NVFP4
// attention, BF16 router/norms/embeddings) or transformers BF16 (fused 3-D experts). It exists to
// measure convert and quantize at real size (scripts/bench_tools_memory.sh) and to test that they
// stream (tests/unit/tools_memory_test.cpp); the values are valid but meaningless.
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace gs {

enum class SyntheticFormat { kCompressedTensors, kBf16 };

struct SyntheticCheckpointOptions {
  std::string config_path;  // a Gemma 4 config.json (Gemma4ForCausalLM or ...ConditionalGeneration)
  std::string output_dir;
  SyntheticFormat format = SyntheticFormat::kCompressedTensors;
  int num_layers = 0;       // > 0: only the first N layers (a smaller model of the same shapes)
  uint64_t seed = 1;
  bool overwrite = false;
  uint64_t max_shard_bytes = 5'000'000'000;
};

Status WriteSyntheticCheckpoint(const SyntheticCheckpointOptions& options);

}  // namespace gs
