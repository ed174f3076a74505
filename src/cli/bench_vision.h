// `gemmaserve bench --vision`: the CUDA vision encoder's throughput and a one-image prompt's TTFT.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace gs::cli {

struct VisionBenchOptions {
  int max_soft_tokens = 280;          // image budget (preprocessing)
  int image_size = 896;               // square test image, pixels
  std::vector<int> batches = {1, 8};  // images per encoder pass
  int reps = 10;                      // timed passes per row (after 2 warm-up passes)
};

// `model` empty: random weights (--load-format dummy). Prints markdown; returns the exit code.
int RunVisionBench(const ModelConfig& config, const std::string& model,
                   const VisionBenchOptions& o);

}  // namespace gs::cli
