// Per-request sampling and stop rules through the engine, against oracles computed here from the
// single-sequence runner's raw logits: seeded sampling (alone, batched, n > 1), stop strings across
// token boundaries, min_tokens, ignore_eos, logit_bias, penalties and logprobs.
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "engine_test_util.h"

namespace gs {
namespace {

using test::DemoModel;
using test::ReadAll;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Two letters per token, so stop strings can start and end inside tokens.
std::string Letters(int32_t id) {
  return {static_cast<char>('a' + id % 26), static_cast<char>('a' + id / 26 % 26)};
}

class LetterDecoder : public TextDecoder {
 public:
  std::unique_ptr<TextStream> NewStream(bool) const override {
    struct Stream : TextStream {
      std::string Push(int32_t id) override { return Letters(id); }
    };
    return std::make_unique<Stream>();
  }
};

class EngineSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineConfig config;
    config.max_num_seqs = 8;
    config.max_num_batched_tokens = 64;
    config.text_decoder = &decoder_;
    runner_ = DemoModel::Get().Runner(EngineKvSpec(config, 64));
    auto e = Engine::Create(*runner_, config);
    ASSERT_TRUE(e.ok()) << e.error().message;
    engine_ = std::move(*e);
  }

  std::vector<test::SeqResult> Run(const Request& r) {
    return test::SubmitAndReadAll(*engine_, r);
  }

  std::vector<int32_t> Prompt(int n) { return test::RandomPrompt(rng_, n, vocab_); }

  // Greedy decoding where `process` edits each raw row first (given the output so far); ends
  // after max_tokens or when `stops` says so. Independent of the engine and of Sampler.
  std::vector<int32_t> ManualGreedy(
      const std::vector<int32_t>& prompt, int max_tokens,
      const std::function<void(std::vector<float>&, const std::vector<int32_t>&)>& process,
      const std::function<bool(const std::vector<int32_t>&)>& stops) {
    std::vector<int32_t> seq = prompt, out;
    while (static_cast<int>(out.size()) < max_tokens) {
      std::vector<float> row = DemoModel::Get().NextLogits(seq);
      process(row, out);
      const int32_t t = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      out.push_back(t);
      seq.push_back(t);
      if (stops(out)) break;
    }
    return out;
  }

  LetterDecoder decoder_;
  std::unique_ptr<CpuRunner> runner_;
  std::unique_ptr<Engine> engine_;
  std::mt19937 rng_{29};
  const int vocab_ = DemoModel::Get().config().vocab_size;
  const std::vector<int>& eos_ = DemoModel::Get().config().eos_token_ids;
};

SamplingParams Sampled(uint64_t seed) {
  SamplingParams p;
  p.temperature = 0.9;
  p.top_k = 40;
  p.top_p = 0.95;
  p.seed = seed;
  return p;
}

TEST_F(EngineSampling, SeededSamplingIsReproducibleAloneBatchedAndAcrossN) {
  Request r;
  r.prompt = Prompt(30);
  r.sampling = Sampled(1234);
  r.max_tokens = 12;
  r.ignore_eos = true;
  const auto alone = Run(r)[0].tokens;
  // gs::Generate with the same parameters and seed is the oracle.
  EXPECT_EQ(alone, DemoModel::Get().Oracle(r.prompt, 12, true, {}, r.sampling));

  // The same request among others (seeded, unseeded, greedy) gives the same tokens.
  std::vector<RequestHandle> others;
  auto mine = engine_->Submit(r);
  ASSERT_TRUE(mine.ok());
  for (int i = 0; i < 8; ++i) {
    Request x;
    x.prompt = Prompt(10 + 9 * i);
    x.max_tokens = 6 + i;
    x.ignore_eos = true;
    if (i % 3 == 0) x.sampling = Sampled(7 + i);
    if (i % 3 == 1) {
      x.sampling = Sampled(0);
      x.sampling.seed.reset();  // a random seed
    }
    others.push_back(*engine_->Submit(x));
  }
  EXPECT_EQ(ReadAll(*mine, 1)[0].tokens, alone);
  for (auto& h : others) ReadAll(h, 1);

  // n = 3: sequence i samples with seed + i, as vLLM does.
  Request n3 = r;
  n3.n = 3;
  auto got = Run(n3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].tokens, DemoModel::Get().Oracle(r.prompt, 12, true, {}, Sampled(1234 + i))) << i;
  }
  EXPECT_NE(got[0].tokens, got[1].tokens);
}

// The stop string is found however the tokens cut it; the offset is where it starts.
TEST_F(EngineSampling, StopStringsSpanningTokenBoundaries) {
  const std::vector<int32_t> prompt = Prompt(25);
  const auto full = DemoModel::Get().Oracle(prompt, 20, true);
  ASSERT_EQ(full.size(), 20u);
  std::string text;
  for (int32_t t : full) text += Letters(t);
  // Two characters across tokens 5|6, four across 3|4|5.
  for (const std::string& stop : {text.substr(11, 2), text.substr(7, 4)}) {
    Request r = test::Greedy(prompt, 20);
    r.ignore_eos = true;
    r.stop = {"#never#", stop};
    const auto got = Run(r)[0];
    const size_t at = text.find(stop);
    const size_t last_token = (at + stop.size() - 1) / 2;  // holds the stop string's last byte
    EXPECT_EQ(got.tokens, std::vector<int32_t>(full.begin(), full.begin() + last_token + 1)) << stop;
    EXPECT_EQ(got.finish, FinishReason::kStop);
    EXPECT_EQ(got.last().stop_string, stop);
    EXPECT_EQ(got.last().stop_text_offset, at);
  }
}

// min_tokens masks stop tokens (eos and stop_token_ids) until that many tokens exist.
TEST_F(EngineSampling, MinTokensDefersStops) {
  const std::vector<int32_t> prompt = Prompt(20);
  const auto plain = DemoModel::Get().Oracle(prompt, 12, true);
  const int32_t stop_id = plain[1];
  Request r = test::Greedy(prompt, 12);
  r.stop_token_ids = {stop_id};
  // Without min_tokens it stops at the second token.
  auto got = Run(r)[0];
  EXPECT_EQ(got.tokens, std::vector<int32_t>(plain.begin(), plain.begin() + 2));
  EXPECT_EQ(got.last().stop_token, stop_id);

  r.min_tokens = 4;
  std::set<int32_t> stops(eos_.begin(), eos_.end());
  stops.insert(stop_id);
  const auto want = ManualGreedy(
      prompt, 12,
      [&](std::vector<float>& row, const std::vector<int32_t>& out) {
        if (out.size() < 4) {
          for (int32_t s : stops) row[s] = kNegInf;
        }
      },
      [&](const std::vector<int32_t>& out) { return out.size() > 4 && stops.contains(out.back()); });
  got = Run(r)[0];
  EXPECT_EQ(got.tokens, want);
  EXPECT_GE(got.tokens.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_FALSE(stops.contains(got.tokens[i])) << i;
}

TEST_F(EngineSampling, LogitBiasIgnoreEosAndMinTokens) {
  const std::vector<int32_t> prompt = Prompt(15);
  const int32_t eos = eos_[0];
  Request r = test::Greedy(prompt, 5);
  r.sampling.logit_bias = {{eos, 100.0f}};
  auto got = Run(r)[0];
  EXPECT_EQ(got.tokens, std::vector<int32_t>{eos});  // forced eos stops at once
  EXPECT_EQ(got.finish, FinishReason::kStop);
  EXPECT_EQ(got.last().stop_token, eos);

  r.ignore_eos = true;
  got = Run(r)[0];
  EXPECT_EQ(got.tokens, std::vector<int32_t>(5, eos));
  EXPECT_EQ(got.finish, FinishReason::kLength);

  // Not ignoring eos but with min_tokens 3: three other tokens (eos masked), then eos.
  r.ignore_eos = false;
  r.min_tokens = 3;
  got = Run(r)[0];
  const auto want = ManualGreedy(
      prompt, 5,
      [&](std::vector<float>& row, const std::vector<int32_t>& out) {
        row[eos] += 100.0f;
        if (out.size() < 3) {
          for (int e : eos_) row[e] = kNegInf;
        }
      },
      [&](const std::vector<int32_t>& out) {
        return out.size() > 3 && std::ranges::find(eos_, out.back()) != eos_.end();
      });
  EXPECT_EQ(got.tokens, want);
  ASSERT_EQ(got.tokens.size(), 4u);
  EXPECT_EQ(got.tokens.back(), eos);

  Request forced = test::Greedy(prompt, 4);
  forced.sampling.logit_bias = {{777, 100.0f}};
  EXPECT_EQ(Run(forced)[0].tokens, std::vector<int32_t>(4, 777));
}

// Penalties against an implementation of vLLM's definitions written here.
TEST_F(EngineSampling, RepetitionPresenceFrequencyPenalties) {
  const std::vector<int32_t> prompt = Prompt(12);
  Request r = test::Greedy(prompt, 10);
  r.ignore_eos = true;
  r.sampling.repetition_penalty = 1.3;
  r.sampling.presence_penalty = 0.7;
  r.sampling.frequency_penalty = 0.4;
  const std::set<int32_t> in_prompt(prompt.begin(), prompt.end());
  const auto want = ManualGreedy(
      prompt, 10,
      [&](std::vector<float>& row, const std::vector<int32_t>& out) {
        std::map<int32_t, int> counts;
        for (int32_t t : out) ++counts[t];
        for (int32_t t = 0; t < static_cast<int32_t>(row.size()); ++t) {
          if (in_prompt.contains(t) || counts.contains(t)) row[t] = row[t] > 0 ? row[t] / 1.3f : row[t] * 1.3f;
          if (counts.contains(t)) row[t] -= static_cast<float>(0.4 * counts[t] + 0.7);
        }
      },
      [](const std::vector<int32_t>&) { return false; });
  const auto got = Run(r)[0].tokens;
  EXPECT_EQ(got, want);
  EXPECT_NE(got, DemoModel::Get().Oracle(prompt, 10, true));  // the penalties changed something
}

// logprobs are those of the raw model logits: compare with a log-softmax of the oracle's rows.
TEST_F(EngineSampling, LogprobsMatchLogSoftmaxOfOracleLogits) {
  for (double temperature : {0.0, 1.5}) {
    Request r;
    r.prompt = Prompt(33);
    r.sampling.temperature = temperature;
    r.sampling.seed = 5;
    r.max_tokens = 6;
    r.ignore_eos = true;
    r.logprobs = true;
    r.top_logprobs = 5;
    const auto got = Run(r)[0];
    ASSERT_EQ(got.tokens.size(), 6u);
    const auto rows = DemoModel::Get().LogitsAlong(r.prompt, got.tokens);
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& row = rows[i];
      const double mx = *std::max_element(row.begin(), row.end());
      double z = 0;
      for (float l : row) z += std::exp(l - mx);
      const double log_z = mx + std::log(z);
      const TokenEvent& e = got.events[i];
      EXPECT_NEAR(e.logprob, row[e.token] - log_z, 1e-4) << i;
      ASSERT_EQ(e.top_logprobs.size(), 5u);
      double mass = 0;
      std::vector<int32_t> order(row.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      for (size_t k = 0; k < 5; ++k) {
        EXPECT_EQ(e.top_logprobs[k].token, order[k]) << i << " " << k;
        EXPECT_NEAR(e.top_logprobs[k].logprob, row[order[k]] - log_z, 1e-4);
        if (k > 0) {
          EXPECT_LE(e.top_logprobs[k].logprob, e.top_logprobs[k - 1].logprob);
        }
        mass += std::exp(e.top_logprobs[k].logprob);
      }
      EXPECT_LE(mass, 1.0 + 1e-5);
      EXPECT_LE(e.logprob, 0.0f);
      if (temperature == 0.0) {
        EXPECT_EQ(e.token, e.top_logprobs[0].token);
        EXPECT_FLOAT_EQ(e.logprob, e.top_logprobs[0].logprob);
      }
    }
  }
}

TEST_F(EngineSampling, DefaultsComeFromGenerationConfig) {
  const SamplingParams d = engine_->DefaultSampling();
  // The demo model's generation_config.json: do_sample, temperature 1, top_k 64, top_p 0.95.
  EXPECT_DOUBLE_EQ(d.temperature, 1.0);
  EXPECT_EQ(d.top_k, 64);
  EXPECT_DOUBLE_EQ(d.top_p, 0.95);
  EXPECT_EQ(std::vector<int>(eos_.begin(), eos_.end()), (std::vector<int>{1, 106, 50}));
  // Stop strings without a decoder are refused with a clear message.
  EngineConfig no_decoder;
  no_decoder.max_num_seqs = 2;
  auto runner = DemoModel::Get().Runner(EngineKvSpec(no_decoder, 8));
  auto e = Engine::Create(*runner, no_decoder);
  ASSERT_TRUE(e.ok());
  Request r = test::Greedy(Prompt(4), 2);
  r.stop = {"x"};
  auto v = (*e)->Validate(r);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("text decoder"), std::string::npos);
}

}  // namespace
}  // namespace gs
