#include "cli/commands.h"

#include <cstdio>

namespace gs::cli {

// Declared here, defined in cmd_*.cpp; one line each keeps the list readable.
int RunBench(int argc, char** argv);
int RunGenerate(int argc, char** argv);
int RunMakeDemoModel(int argc, char** argv);

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"bench", "offline decode/prefill benchmark on the GPU (--load-format dummy: no checkpoint)",
       RunBench},
      {"generate", "run a prompt of token ids through the model, print ids and tok/s", RunGenerate},
      {"make-demo-model", "write a tiny random-weight Gemma 4 MoE checkpoint (NVFP4)",
       RunMakeDemoModel},
  };
  return commands;
}

int Fail(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "gemmaserve %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace gs::cli
