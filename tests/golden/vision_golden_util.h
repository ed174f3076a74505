// Reading tests/data/golden_vision (made by scripts/golden/make_golden_vision.py with
// transformers 5.17 on the GPU machine's CPU).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gs::golden {

inline std::string VisionRoot() { return std::string(GS_SOURCE_DIR) + "/tests/data/golden_vision"; }

inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// A C-order uint8 .npy (format 1.0, '|u1'), as numpy.save writes it.
struct NpyU8 {
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

inline NpyU8 ReadNpyU8(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  NpyU8 out;
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) return out;
  const size_t hlen = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  const std::string header(bytes.data() + 10, hlen);
  if (header.find("'|u1'") == std::string::npos) return out;
  const size_t open = header.find("'shape': (") + 10, close = header.find(')', open);
  std::string dims = header.substr(open, close - open);
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t comma = dims.find(',', pos);
    if (comma == std::string::npos) comma = dims.size();
    const std::string d = dims.substr(pos, comma - pos);
    if (d.find_first_of("0123456789") != std::string::npos) out.shape.push_back(std::stoll(d));
    pos = comma + 1;
  }
  out.data.assign(bytes.begin() + 10 + static_cast<std::ptrdiff_t>(hlen), bytes.end());
  return out;
}

}  // namespace gs::golden
