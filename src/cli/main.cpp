// gemmaserve: one binary, many subcommands (serve, generate, bench, convert, ...).
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

void PrintUsage() {
  std::printf(
      "gemmaserve — a native inference server for Google's Gemma 4 (NVFP4, BF16)\n\n"
      "Usage: gemmaserve <command> [options]   (gemmaserve <command> --help for details)\n\n"
      "Commands:\n");
  for (const auto& c : gs::cli::AllCommands()) std::printf("  %-16s %s\n", c.name, c.summary);
  std::printf("\nExample:\n  gemmaserve make-demo-model --output demo-model\n"
              "  gemmaserve generate --model demo-model --prompt-ids 2,105,2364 --max-tokens 8\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : gs::cli::AllCommands()) {
    if (std::strcmp(argv[1], c.name) == 0) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "gemmaserve: unknown command '%s' (see gemmaserve --help)\n", argv[1]);
  return 2;
}
