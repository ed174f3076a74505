// Shared by the engine tests: the demo model (written once per test process to a temp dir), CPU
// runners over it, the single-request oracle (gs::Generate, which knows nothing of the engine) and
// a helper that reads a request's events to the end.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "engine/engine.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "tools/demo_model.h"

namespace gs::test {

class DemoModel {
 public:
  static DemoModel& Get() {
    static DemoModel model;
    return model;
  }
  const ModelConfig& config() const { return config_; }

  // A CPU runner over the demo weights with two threads (the test machines have two cores).
  std::unique_ptr<CpuRunner> Runner(const KvCacheSpec& spec) const {
    return std::make_unique<CpuRunner>(config_, weights_, spec, CpuRunnerOptions{2, 0.0f});
  }

  // gs::Generate with greedy decoding, stopping at the config's eos ids unless ignore_eos:
  // the reference every engine result is compared with. Memoised.
  std::vector<int32_t> Oracle(const std::vector<int32_t>& prompt, int max_tokens,
                              bool ignore_eos = false, const std::vector<int32_t>& stop_ids = {},
                              const SamplingParams& sampling = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool memo = !sampling.seed && sampling.temperature == 0;
    auto key = std::make_tuple(prompt, max_tokens, ignore_eos, stop_ids);
    if (memo) {
      auto it = oracle_cache_.find(key);
      if (it != oracle_cache_.end()) return it->second;
    }
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.ignore_eos = ignore_eos;
    o.stop_ids.assign(config_.eos_token_ids.begin(), config_.eos_token_ids.end());
    if (ignore_eos) o.stop_ids.clear();
    o.stop_ids.insert(o.stop_ids.end(), stop_ids.begin(), stop_ids.end());
    o.sampling = sampling;
    // Generate's ignore_eos switches off every stop id; eos-only ignoring is done by the list.
    o.ignore_eos = false;
    auto r = Generate(*oracle_runner_, prompt, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    std::vector<int32_t> out = r.ok() ? r->tokens : std::vector<int32_t>{};
    if (memo) oracle_cache_[key] = out;
    return out;
  }

  // The raw logits that predict the token after `tokens`.
  std::vector<float> NextLogits(const std::vector<int32_t>& tokens) {
    std::lock_guard<std::mutex> lock(mu_);
    GenerateOptions o;
    o.max_tokens = 0;
    o.prompt_logits = true;
    auto r = Generate(*oracle_runner_, tokens, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return {};
    return {r->prompt_logits.end() - config_.vocab_size, r->prompt_logits.end()};
  }

  // The raw logits that predict each token of `continuation` after `prompt` (row j: after the
  // prompt and continuation[0..j)), from the single-sequence runner.
  std::vector<std::vector<float>> LogitsAlong(const std::vector<int32_t>& prompt,
                                              const std::vector<int32_t>& continuation) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), continuation.begin(), continuation.end());
    GenerateOptions o;
    o.max_tokens = 0;
    o.prompt_logits = true;
    auto r = Generate(*oracle_runner_, all, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    std::vector<std::vector<float>> rows;
    const size_t v = static_cast<size_t>(config_.vocab_size);
    for (size_t j = 0; j < continuation.size() && r.ok(); ++j) {
      const size_t i = prompt.size() - 1 + j;  // the position whose logits predict token j
      rows.emplace_back(r->prompt_logits.begin() + static_cast<std::ptrdiff_t>(i * v),
                        r->prompt_logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * v));
    }
    return rows;
  }

 private:
  DemoModel() {
    dir_ = std::filesystem::temp_directory_path() / ("gs_engine_test_" + std::to_string(::getpid()));
    DemoModelOptions o;
    o.output_dir = dir_.string();
    o.overwrite = true;
    auto st = WriteDemoModel(o);
    if (!st) ADD_FAILURE() << st.error().message;
    auto c = LoadModelConfig(dir_.string());
    if (!c) ADD_FAILURE() << c.error().message;
    config_ = *c;
    auto w = LoadGemma4Weights(config_, dir_.string());
    if (!w) ADD_FAILURE() << w.error().message;
    weights_ = *w;
    oracle_runner_ = Runner(KvSpecForSingleSequence(1024));
  }
  ~DemoModel() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path dir_;
  ModelConfig config_;
  Gemma4Weights weights_;
  std::unique_ptr<CpuRunner> oracle_runner_;
  std::mutex mu_;
  std::map<std::tuple<std::vector<int32_t>, int, bool, std::vector<int32_t>>, std::vector<int32_t>>
      oracle_cache_;
};

// One sequence's events, read to its end.
struct SeqResult {
  std::vector<int32_t> tokens;
  std::vector<TokenEvent> events;
  FinishReason finish = FinishReason::kNone;
  const TokenEvent& last() const { return events.back(); }
};

// Reads a request's stream until every sequence finished (fails the test after `limit`).
inline std::vector<SeqResult> ReadAll(const RequestHandle& h, int n,
                                      std::chrono::seconds limit = std::chrono::seconds(120)) {
  std::vector<SeqResult> out(static_cast<size_t>(n));
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!h->done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "request " << h->id() << " did not finish in time";
      break;
    }
    for (TokenEvent& e : h->Read(std::chrono::milliseconds(100))) {
      SeqResult& s = out[static_cast<size_t>(e.index)];
      EXPECT_EQ(s.finish, FinishReason::kNone) << "event after the final one";
      if (e.token >= 0) s.tokens.push_back(e.token);
      s.finish = e.finish;
      s.events.push_back(std::move(e));
    }
  }
  return out;
}

// Submits `r` and reads all its sequences (empty results, and a test failure, if refused).
inline std::vector<SeqResult> SubmitAndReadAll(Engine& engine, const Request& r) {
  auto h = engine.Submit(r);
  EXPECT_TRUE(h.ok()) << h.error().message;
  return h.ok() ? ReadAll(*h, r.n) : std::vector<SeqResult>(static_cast<size_t>(r.n));
}

inline std::vector<int32_t> RandomPrompt(std::mt19937& rng, int length, int vocab) {
  // Ids 3.. keep clear of pad/eos/bos so a prompt never contains a stop token by accident.
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> p(static_cast<size_t>(length));
  for (auto& t : p) t = id(rng);
  return p;
}

inline Request Greedy(std::vector<int32_t> prompt, int max_tokens) {
  Request r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  return r;
}

}  // namespace gs::test
