// Reading tests/data/golden_vision (made by scripts/golden/make_golden_vision.py with
// transformers 5.17 on the GPU machine's CPU) and tests/data/golden_vision_bf16 (the same script
// with --profile bf16: a model conditioned like a trained one, so that a bf16-activation engine
// can meet the fp32 criterion; docs/golden-precision.md explains why the default set cannot).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gs::golden {

inline std::string VisionRoot() { return std::string(GS_SOURCE_DIR) + "/tests/data/golden_vision"; }

// The bf16-conditioned set; GS_GOLDEN_VISION_BF16_ROOT overrides the source-tree path (binaries
// carried to a GPU machine). It may be absent: tests over it then skip loudly.
inline std::string ConditionedVisionRoot() {
  const char* env = std::getenv("GS_GOLDEN_VISION_BF16_ROOT");
  return env != nullptr && *env != '\0'
             ? env
             : std::string(GS_SOURCE_DIR) + "/tests/data/golden_vision_bf16";
}

inline bool HasVisionModel(const std::string& root) {
  return std::filesystem::exists(root + "/model/reference.json");
}

// The loud message of a test that skips because `root` (the conditioned set) is missing.
inline std::string NoConditionedVisionMessage(const std::string& root) {
  return "\n*** NO BF16-CONDITIONED VISION GOLDEN DATA in " + root +
         " (make it on the device machine with `MAKE_GOLDEN_PY=scripts/golden/"
         "make_golden_vision.py GOLDEN_NAME=golden_vision_bf16 bash scripts/gpu/make_golden.sh "
         "--profile bf16`, then `tar xzf golden_vision_bf16.tar.gz -C tests/data`; see "
         "scripts/gpu/make_golden.sh): NOTHING CHECKED ON THAT SET ***";
}

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

// The positions of one prompt of the conditioned set where transformers' logits are robust to
// bf16 rounding: top1 - top2 logit gap and every router top-k margin at least the generator's
// required minima (reference.json "selection"), from the per-position "logit_gaps" /
// "router_margins". The generator guarantees this at every position whose token is not the image
// token; image-token positions cannot be chosen, so only some of them qualify. Empty when the
// fields are missing (an old or default-profile file).
inline std::vector<bool> CertifiedPositions(const nlohmann::json& ref, const nlohmann::json& prompt) {
  if (!ref.contains("selection") || !prompt.contains("logit_gaps") ||
      !prompt.contains("router_margins")) {
    return {};
  }
  const double min_gap = ref["selection"]["min_prompt_logit_gap_required"].get<double>();
  const double min_router = ref["selection"]["min_router_margin_required"].get<double>();
  const auto gaps = prompt["logit_gaps"].get<std::vector<double>>();
  const auto routers = prompt["router_margins"].get<std::vector<double>>();
  if (gaps.size() != routers.size()) return {};
  std::vector<bool> out(gaps.size());
  for (size_t t = 0; t < gaps.size(); ++t) out[t] = gaps[t] >= min_gap && routers[t] >= min_router;
  return out;
}

}  // namespace gs::golden
