#include "cli/int_list.h"

#include <cstdlib>
#include <sstream>

namespace gs::cli {

Expected<std::vector<int>> ParseIntList(const std::string& text, const char* option, int min,
                                        bool allow_empty) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    char* end = nullptr;
    const long v = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || v < min || v > (1 << 20)) {
      return MakeError(option, ": '", part, "' is not an integer in [", min, ", ", 1 << 20, "]");
    }
    out.push_back(static_cast<int>(v));
  }
  if (out.empty() && !allow_empty) return MakeError(option, ": empty list");
  return out;
}

}  // namespace gs::cli
