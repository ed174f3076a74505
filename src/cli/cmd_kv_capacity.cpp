// gemmaserve kv-capacity: sequences per KV budget with the engine's KV layout (for
// docs/benchmarks.md "KV cache capacity"). Needs only config.json.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "tools/kv_capacity.h"

namespace gs::cli {

int RunKvCapacity(int argc, char** argv) {
  CLI::App app{"How many sequences of a given length fit in a KV budget with gemmaserve's KV "
               "layout:\nglobal layers paged per token, sliding layers a ring of sliding_window "
               "positions per\nsequence, plus prefix-cache snapshot slots from the same memory.\n"
               "Example: gemmaserve kv-capacity configs/gemma-4-26B-A4B-it --budget-gib 10"};
  std::string path;
  KvCapacityOptions o;
  app.add_option("path", path, "directory with config.json (or a cached Hugging Face id)")->required();
  app.add_option("--budget-gib", o.budget_gib, "KV memory budget in GiB")->check(CLI::Range(0.001, 1e6));
  app.add_option("--max-model-len", o.seq_lens, "sequence lengths (tokens) to tabulate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--kv-cache-dtype", o.dtypes, "element types to tabulate")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  app.add_option("--prefix-snapshots", o.snapshot_slots, "snapshot slot counts to tabulate")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--block-size", o.block_size, "tokens per global-layer block")->check(CLI::Range(1, 1 << 16));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto dir = ResolveModelPath(path);
  if (!dir) return Fail("kv-capacity", dir.error().message);
  auto config = LoadModelConfig(*dir);
  if (!config) return Fail("kv-capacity", config.error().message);
  const auto rows = ComputeKvCapacity(*config, o);
  std::fputs(FormatKvCapacity(*config, o, rows).c_str(), stdout);
  return 0;
}

}  // namespace gs::cli
