// Reading the transformers golden data (made by scripts/golden/make_golden.py): two sets of the
// same layout, tests/data/golden (random models, the default profile) and tests/data/golden_bf16
// (models conditioned so that a bf16-activation engine can meet the fp32 criterion; reference.json
// has "profile": "bf16"). docs/golden-precision.md says which criterion applies to which set.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gs::golden {

// The compiled-in default set.
inline std::string GoldenRoot() { return std::string(GS_SOURCE_DIR) + "/tests/data/golden"; }

// The default set as the tests read it: GS_GOLDEN_ROOT overrides the compiled-in path (binaries
// carried to a GPU machine, scripts/gpu/check.sh).
inline std::string DefaultGoldenRoot() {
  const char* env = std::getenv("GS_GOLDEN_ROOT");
  return env != nullptr && *env != '\0' ? env : GoldenRoot();
}

// The bf16-conditioned set (make_golden.py --profile bf16); GS_GOLDEN_BF16_ROOT overrides it.
// It may be absent: tests over it then skip loudly.
inline std::string ConditionedGoldenRoot() {
  const char* env = std::getenv("GS_GOLDEN_BF16_ROOT");
  return env != nullptr && *env != '\0' ? env
                                         : std::string(GS_SOURCE_DIR) + "/tests/data/golden_bf16";
}

// Every config directory under `root` holding a reference.json, sorted.
inline std::vector<std::string> ConfigsUnder(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (std::filesystem::exists(e.path() / "reference.json")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The default set's configs.
inline std::vector<std::string> GoldenConfigs() { return ConfigsUnder(DefaultGoldenRoot()); }

// The conditioned set's configs (empty while tests/data/golden_bf16 does not exist).
inline std::vector<std::string> ConditionedGoldenConfigs() {
  return ConfigsUnder(ConditionedGoldenRoot());
}

// The loud message of a test that skips because the conditioned set is missing.
inline std::string NoConditionedDataMessage() {
  return "\n*** NO BF16-CONDITIONED GOLDEN DATA in " + ConditionedGoldenRoot() +
         " (make it with `GOLDEN_NAME=golden_bf16 bash scripts/gpu/make_golden.sh --profile bf16`"
         ", see docs/golden-precision.md): NOTHING CHECKED ON THAT SET ***";
}

inline nlohmann::json ReadReference(const std::string& dir) {
  std::ifstream in(dir + "/reference.json");
  return nlohmann::json::parse(in);
}

// Whether a config's reference.json comes from make_golden.py --profile bf16 (older files and the
// default profile have no "profile" field).
inline bool IsConditioned(const nlohmann::json& ref) {
  return ref.contains("profile") && ref["profile"].is_string() &&
         ref["profile"].get<std::string>() == "bf16";
}

// ||a - b|| / ||b|| over one row.
inline double RelativeL2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace gs::golden
