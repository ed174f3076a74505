// Runs tests/oracle/render_jinja2.py (Python jinja2 set up as transformers does) on a batch of
// cases and returns its results; skips the calling test loudly when python3 or jinja2 is missing.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace gs::testing {

inline bool PythonJinjaAvailable() {
  return std::system("python3 -c 'import jinja2' > /dev/null 2>&1") == 0;
}

// cases: [{"template":..., "context":...} | {"template":..., "request":..., "tokens":...}]
// Returns the "results" array, or null JSON on failure (the test is failed with a message).
inline nlohmann::ordered_json RunJinjaOracle(const nlohmann::ordered_json& cases,
                                             const std::string& tag) {
  const std::string dir = ::testing::TempDir();
  const std::string in = dir + "/jinja_oracle_" + tag + "_in.json";
  const std::string out = dir + "/jinja_oracle_" + tag + "_out.json";
  {
    std::ofstream f(in, std::ios::binary);
    f << nlohmann::ordered_json{{"cases", cases}}.dump();
  }
  const std::string cmd = std::string("python3 ") + GS_SOURCE_DIR +
                          "/tests/oracle/render_jinja2.py '" + in + "' '" + out + "'";
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << "oracle command failed: " << cmd;
    return nullptr;
  }
  std::ifstream f(out, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto parsed = nlohmann::ordered_json::parse(ss.str(), nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("results")) {
    ADD_FAILURE() << "oracle output is not valid JSON: " << out;
    return nullptr;
  }
  return parsed["results"];
}

}  // namespace gs::testing
