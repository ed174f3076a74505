// gemmaserve quantize: BF16 -> ModelOpt NVFP4 (experts and dense MLP), the ModelOpt recipe.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "tools/quantize.h"

namespace gs::cli {

int RunQuantize(int argc, char** argv) {
  CLI::App app{
      "Quantize a BF16 Gemma 4 checkpoint to ModelOpt NVFP4 (group 16, e4m3 block scales under a\n"
      "per-tensor fp32 scale): routed experts (written per expert) and the dense MLP; attention,\n"
      "router, embeddings/lm_head and vision stay BF16. Without --calib the result is weight-only\n"
      "(quant_algo W4A16_NVFP4, no input_scale); with it, input_scale = amax/(6*448) per linear."};
  QuantizeOptions o;
  double shard_gb = 5.0;
  app.add_option("--from", o.from, "BF16 checkpoint directory")->required()->check(CLI::ExistingDirectory);
  app.add_option("--to", o.to, "output directory (must not exist unless --overwrite)")->required();
  app.add_option("--exclude", o.exclude,
                 "keep matching modules in BF16 (glob, e.g. 'model.language_model.layers.0.*'); repeatable");
  app.add_option("--calib", o.calib_file,
                 "calibration data for input_scale: text (needs tokenizer.json) or .jsonl of strings / "
                 "token-id arrays; every expert sees every token")
      ->check(CLI::ExistingFile);
  app.add_option("--calib-chunk-tokens", o.calib_chunk_tokens, "tokens per calibration sequence")
      ->check(CLI::Range(1, 1 << 20));
  app.add_flag("--overwrite", o.overwrite, "replace an existing output directory");
  app.add_option("--max-shard-size", shard_gb, "largest safetensors shard, in GB")->check(CLI::Range(0.001, 1000.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.max_shard_bytes = static_cast<uint64_t>(shard_gb * 1e9);
  auto st = QuantizeBf16ToNvfp4(o);
  if (!st) return Fail("quantize", st.error().message);
  std::printf("wrote NVFP4 (ModelOpt, %s) checkpoint to %s\n",
              o.calib_file.empty() ? "weight-only" : "calibrated input scales", o.to.c_str());
  return 0;
}

}  // namespace gs::cli
