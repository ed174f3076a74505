#include "cli/commands.h"

#include <cstdio>

namespace gs::cli {

// Declared here, defined in cmd_*.cpp; one line each keeps the list readable.
int RunChatTemplate(int argc, char** argv);

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"chat-template", "render a chat request through a chat template", RunChatTemplate},
  };
  return commands;
}

int Fail(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "gemmaserve %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace gs::cli
