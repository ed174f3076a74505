// `gemmaserve quantize`: a BF16 Gemma 4 checkpoint to ModelOpt NVFP4 with the ModelOpt weight
// recipe (src/model/nvfp4_quantize.h). By default the routed experts (written per expert) and the
// dense MLP are quantized and attention, router, embeddings/lm_head and vision stay BF16 — the
// FusenAI pattern. Without calibration the result is weight-only (quant_algo W4A16_NVFP4, no
// input_scale), which is what Hopper runs anyway; with --calib it is W4A4-ready NVFP4.
//
// Memory: the checkpoint is streamed tensor by tensor and the mapped pages are released as they
// are consumed (src/tools/source_pages.h), so writing needs a few hundred MB whatever the model's
// size. Calibration is the exception: its CPU forward pass touches every weight, so while it runs
// the RSS can reach the size of the BF16 weights (plus activations and KV for the longest
// sequence); those pages are released before the first tensor is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace gs {

struct QuantizeOptions {
  std::string from, to;
  std::vector<std::string> exclude;  // extra modules kept in BF16 (ModelOpt-style '*' globs)
  bool overwrite = false;
  uint64_t max_shard_bytes = 5'000'000'000;
  // Calibration data for input_scale (= amax of each quantized linear's input / (6·448), every
  // expert seeing every token): a .jsonl file of token-id arrays or JSON strings, or plain text;
  // text needs the checkpoint's tokenizer.json. Empty = weight-only (W4A16_NVFP4).
  std::string calib_file;
  int calib_chunk_tokens = 512;  // text is cut into sequences of at most this many tokens
};

Status QuantizeBf16ToNvfp4(const QuantizeOptions& options);

}  // namespace gs
