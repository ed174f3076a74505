// gemmaserve convert: compressed-tensors NVFP4 -> ModelOpt NVFP4 with BF16 attention.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "tools/convert.h"

namespace gs::cli {

int RunConvert(int argc, char** argv) {
  CLI::App app{
      "Convert a compressed-tensors NVFP4 Gemma 4 checkpoint (e.g. RedHatAI/gemma-4-26B-A4B-it-NVFP4)\n"
      "to ModelOpt NVFP4 with every attention projection dequantized to BF16, as\n"
      "FusenAI/gemma-4-26B-A4B-it-NVFP4 was made. The whole input is validated before anything is\n"
      "written; the output appears only when complete."};
  ConvertOptions o;
  double shard_gb = 5.0;
  app.add_option("--from", o.from, "compressed-tensors checkpoint directory")->required()->check(CLI::ExistingDirectory);
  app.add_option("--to", o.to, "output directory (must not exist unless --overwrite)")->required();
  app.add_flag("--overwrite", o.overwrite, "replace an existing output directory");
  app.add_option("--max-shard-size", shard_gb, "largest safetensors shard, in GB")->check(CLI::Range(0.001, 1000.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.max_shard_bytes = static_cast<uint64_t>(shard_gb * 1e9);
  auto st = ConvertCompressedTensorsToModelopt(o);
  if (!st) return Fail("convert", st.error().message);
  std::printf("wrote ModelOpt NVFP4 checkpoint (BF16 attention) to %s\n", o.to.c_str());
  return 0;
}

}  // namespace gs::cli
