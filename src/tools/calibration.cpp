#include "tools/calibration.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/cpu/cpu_ops.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

Expected<std::vector<int32_t>> Tokenize(const std::string& text, const std::string& model_dir,
                                        const std::string& path) {
  const std::string tok_path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  if (!std::filesystem::exists(tok_path)) {
    return MakeError(path, " holds text, but ", tok_path, " is missing; give token ids as a .jsonl "
                     "of arrays instead");
  }
  GS_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(tok_path));
  return tok.Encode(text, /*add_special_tokens=*/true);
}

void AppendChunks(const std::vector<int32_t>& ids, int chunk, std::vector<std::vector<int32_t>>* out) {
  for (size_t i = 0; i < ids.size(); i += static_cast<size_t>(chunk)) {
    out->emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(i),
                      ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), i + chunk)));
  }
}

}  // namespace

Expected<std::vector<std::vector<int32_t>>> ReadCalibrationSequences(const std::string& path,
                                                                     const std::string& model_dir,
                                                                     int chunk_tokens, int vocab_size) {
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  std::vector<std::vector<int32_t>> seqs;
  if (!path.ends_with(".jsonl")) {
    GS_ASSIGN_OR_RETURN(std::vector<int32_t> ids, Tokenize(text, model_dir, path));
    AppendChunks(ids, chunk_tokens, &seqs);
  } else {
    std::istringstream lines(text);
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      std::vector<int32_t> ids;
      if (j.is_string()) {
        GS_ASSIGN_OR_RETURN(ids, Tokenize(j.get<std::string>(), model_dir, path));
      } else if (j.is_array() && std::all_of(j.begin(), j.end(), [](const auto& v) { return v.is_number_integer(); })) {
        ids = j.get<std::vector<int32_t>>();
      } else {
        return MakeError(path, " line ", n, ": expected a JSON string or an array of token ids");
      }
      for (int32_t id : ids) {
        if (id < 0 || id >= vocab_size) return MakeError(path, " line ", n, ": token id ", id, " is outside the vocabulary");
      }
      AppendChunks(ids, chunk_tokens, &seqs);
    }
  }
  std::erase_if(seqs, [](const auto& s) { return s.empty(); });
  if (seqs.empty()) return MakeError(path, ": no calibration tokens");
  return seqs;
}

Expected<std::map<std::string, float>> MeasureInputAmax(const ModelConfig& config, Gemma4Weights weights,
                                                        const std::vector<std::vector<int32_t>>& sequences) {
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  CpuRunner runner(config, std::move(weights), KvSpecForSingleSequence(static_cast<int>(longest)));
  std::map<std::string, float> amax;
  cpu::SetLinearInputObserver([&amax](const QuantizedLinear& w, const float* x, int tokens) {
    float m = 0.0f;
    for (int64_t i = 0; i < static_cast<int64_t>(tokens) * w.cols; ++i) m = std::max(m, std::fabs(x[i]));
    float& slot = amax[w.name];
    slot = std::max(slot, m);
  });
  Status status;
  for (const auto& s : sequences) {
    GenerateOptions opts;
    opts.max_tokens = 0;
    auto r = Generate(runner, s, opts);
    if (!r.ok()) {
      status = r.take_error();
      break;
    }
  }
  cpu::SetLinearInputObserver({});
  if (!status.ok()) return status.take_error();
  return amax;
}

}  // namespace gs
