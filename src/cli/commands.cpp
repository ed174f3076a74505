#include "cli/commands.h"

#include <cstdio>

namespace gs::cli {

// Declared here, defined in cmd_*.cpp; one line each keeps the list readable.
int RunTokenize(int argc, char** argv);
int RunDetokenize(int argc, char** argv);
int RunBenchTokenizer(int argc, char** argv);

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"tokenize", "text (JSON lines) -> token ids with a tokenizer.json", RunTokenize},
      {"detokenize", "token ids (JSON lines) -> text with a tokenizer.json", RunDetokenize},
      {"bench-tokenizer", "tokenizer load and encode speed (vs HF tokenizers)", RunBenchTokenizer},
  };
  return commands;
}

int Fail(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "gemmaserve %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace gs::cli
