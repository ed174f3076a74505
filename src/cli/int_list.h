// Comma-separated integer options of the benchmark subcommands ("1,4,32").
#pragma once

#include <string>
#include <vector>

#include "util/status.h"

namespace gs::cli {

// The integers of `text` ("" is an empty list when allow_empty), each in [min, 2^20]; the error
// names `option` and the offending part.
Expected<std::vector<int>> ParseIntList(const std::string& text, const char* option, int min,
                                        bool allow_empty);

}  // namespace gs::cli
