// Each subcommand of the gemmaserve binary lives in its own cmd_*.cpp and is listed here.
#pragma once

#include <string>
#include <vector>

namespace gs::cli {

// argv[0] is the subcommand name; returns the process exit code.
using CommandFn = int (*)(int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
};

const std::vector<Command>& AllCommands();

// Prints "gemmaserve <cmd>: error: <message>" to stderr and returns exit code 1.
int Fail(const std::string& command, const std::string& message);

}  // namespace gs::cli
