// Reading the transformers golden data of tests/data/golden (made by scripts/golden/).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gs::golden {

inline std::string GoldenRoot() { return std::string(GS_SOURCE_DIR) + "/tests/data/golden"; }

// Every config directory holding a reference.json.
inline std::vector<std::string> GoldenConfigs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(GoldenRoot(), ec)) {
    if (std::filesystem::exists(e.path() / "reference.json")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline nlohmann::json ReadReference(const std::string& dir) {
  std::ifstream in(dir + "/reference.json");
  return nlohmann::json::parse(in);
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
