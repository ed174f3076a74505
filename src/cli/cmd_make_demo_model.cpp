// gemmaserve make-demo-model: writes a tiny random-weight Gemma 4 MoE checkpoint (NVFP4).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "tools/demo_model.h"

namespace gs::cli {

int RunMakeDemoModel(int argc, char** argv) {
  CLI::App app{"Write a tiny random-weight Gemma 4 MoE checkpoint in ModelOpt NVFP4 format.\n"
               "Its output is random-weight gibberish: it exercises the code, not the language."};
  DemoModelOptions opts;
  app.add_option("--output", opts.output_dir, "directory to write")->required();
  app.add_option("--seed", opts.seed, "random seed for the weights");
  app.add_flag("--overwrite", opts.overwrite, "replace a model already in --output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto st = WriteDemoModel(opts);
  if (!st) return Fail("make-demo-model", st.error().message);
  std::printf("wrote a random-weight Gemma 4 MoE demo model (NVFP4) to %s\n", opts.output_dir.c_str());
  return 0;
}

}  // namespace gs::cli
