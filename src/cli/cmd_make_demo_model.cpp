// gemmaserve make-demo-model: writes a tiny random-weight Gemma 4 MoE checkpoint (NVFP4), or with
// --config a random checkpoint of that config's real shapes (compressed-tensors or BF16).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tools/demo_model.h"
#include "tools/synthetic_checkpoint.h"

namespace gs::cli {

int RunMakeDemoModel(int argc, char** argv) {
  CLI::App app{"Write a tiny random-weight Gemma 4 MoE checkpoint in ModelOpt NVFP4 format.\n"
               "Its output is random-weight gibberish: it exercises the code, not the language.\n"
               "With --config: a random checkpoint with that config's real tensor shapes (text model,\n"
               "no vision tower) in compressed-tensors NVFP4 or BF16, for measuring convert and\n"
               "quantize at full size (scripts/bench_tools_memory.sh)."};
  DemoModelOptions opts;
  SyntheticCheckpointOptions synth;
  std::string format = "ct";
  app.add_option("--output", opts.output_dir, "directory to write")->required();
  app.add_option("--seed", opts.seed, "random seed for the weights");
  app.add_flag("--overwrite", opts.overwrite, "replace a model already in --output");
  auto* config = app.add_option("--config", synth.config_path,
                                "a Gemma 4 config.json whose shapes to use (e.g. "
                                "configs/gemma-4-26B-A4B-it/config.json)")
                     ->check(CLI::ExistingFile);
  app.add_option("--format", format, "with --config: ct (compressed-tensors NVFP4, default) or bf16")
      ->check(CLI::IsMember({"ct", "bf16"}))
      ->needs(config);
  app.add_option("--layers", synth.num_layers, "with --config: keep only the first N layers")
      ->check(CLI::PositiveNumber)
      ->needs(config);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!synth.config_path.empty()) {
    synth.format = format == "bf16" ? SyntheticFormat::kBf16 : SyntheticFormat::kCompressedTensors;
    synth.output_dir = opts.output_dir;
    synth.seed = opts.seed;
    synth.overwrite = opts.overwrite;
    auto st = WriteSyntheticCheckpoint(synth);
    if (!st) return Fail("make-demo-model", st.error().message);
    std::printf("wrote a random %s checkpoint shaped like %s to %s\n",
                synth.format == SyntheticFormat::kBf16 ? "BF16" : "compressed-tensors NVFP4",
                synth.config_path.c_str(), opts.output_dir.c_str());
    return 0;
  }
  auto st = WriteDemoModel(opts);
  if (!st) return Fail("make-demo-model", st.error().message);
  std::printf("wrote a random-weight Gemma 4 MoE demo model (NVFP4) to %s\n", opts.output_dir.c_str());
  return 0;
}

}  // namespace gs::cli
