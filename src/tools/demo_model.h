// `gemmaserve make-demo-model`: a tiny random-weight Gemma 4 MoE checkpoint in ModelOpt NVFP4
// form (experts and dense MLP NVFP4, everything else BF16), with every feature of the 26B-A4B
// text model: sliding and global layers with their own head sizes, k_eq_v, proportional RoPE,
// 8 experts top-2. Its output is gibberish by construction; it exists to exercise the code paths.
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace gs {

struct DemoModelOptions {
  std::string output_dir;
  uint64_t seed = 1234;
  bool overwrite = false;
};

Status WriteDemoModel(const DemoModelOptions& options);

}  // namespace gs
