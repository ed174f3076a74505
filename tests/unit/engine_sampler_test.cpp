// The per-sequence Sampler, log-probabilities, stop rules and prefix-cache keys on synthetic
// inputs, against values computed here from the definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "engine/block_hash.h"
#include "engine/stop_checker.h"
#include "runtime/sampling.h"

namespace gs {
namespace {

std::map<int32_t, int> Histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) ++h[s.Sample(logits)];
  return h;
}

TEST(Sampler, GreedyAndTopK1PickTheArgmax) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.Sample(logits), 1);  // ties: the lower id
  SamplingParams p;
  p.temperature = 2.0;
  p.top_k = 1;
  p.seed = 1;
  Sampler top1(p);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(top1.Sample(logits), 1);
}

TEST(Sampler, TemperatureSamplingFollowsTheSoftmax) {
  // Probabilities 1/7, 2/7, 4/7 at temperature 1; at temperature 2 they are ∝ 1, √2, 2.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f)};
  for (double t : {1.0, 2.0}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 42;
    Sampler s(p);
    const int n = 40000;
    auto h = Histogram(s, logits, n);
    double z = 0;
    for (float l : logits) z += std::exp(l / t);
    for (int32_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(h[i] / static_cast<double>(n), std::exp(logits[i] / t) / z, 0.01) << t << " " << i;
    }
  }
}

TEST(Sampler, TopKTopPMinPTruncate) {
  // Probabilities 0.5, 0.25, 0.15, 0.1 (temperature 1).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.25f), std::log(0.15f), std::log(0.1f)};
  auto only = [&](SamplingParams p, std::vector<int32_t> allowed) {
    p.temperature = 1.0;
    p.seed = 9;
    Sampler s(p);
    auto h = Histogram(s, logits, 4000);
    for (const auto& [tok, count] : h) {
      EXPECT_NE(std::find(allowed.begin(), allowed.end(), tok), allowed.end()) << tok;
    }
    EXPECT_EQ(h.size(), allowed.size());
  };
  SamplingParams p;
  p.top_k = 2;
  only(p, {0, 1});
  p = {};
  p.top_p = 0.7;  // 0.5 + 0.25 reaches 0.7
  only(p, {0, 1});
  p.top_p = 0.45;  // the first alone reaches it
  only(p, {0});
  p = {};
  p.min_p = 0.25;  // keep p >= 0.125
  only(p, {0, 1, 2});
  p = {};
  only(p, {0, 1, 2, 3});
}

TEST(Sampler, SameSeedSameTokens) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i)) * 3;
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 77;
  Sampler a(p), b(p);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 100; ++i) {
    ta.push_back(a.Sample(logits));
    tb.push_back(b.Sample(logits));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 78;
  Sampler c(p);
  std::vector<int32_t> tc;
  for (int i = 0; i < 100; ++i) tc.push_back(c.Sample(logits));
  EXPECT_NE(ta, tc);
}

TEST(Sampler, BiasAndPenaltiesFollowVllmDefinitions) {
  SamplingParams p;
  p.logit_bias = {{2, 5.0f}};
  std::vector<float> row = {1.0f, 2.0f, -1.0f};
  Sampler bias(p);
  EXPECT_EQ(bias.SampleInPlace(row), 2);
  EXPECT_FLOAT_EQ(row[2], 4.0f);

  // Repetition: prompt and output tokens, divided when positive, multiplied when negative.
  p = {};
  p.repetition_penalty = 2.0;
  const std::vector<int32_t> prompt = {0, 2};
  Sampler rep(p, prompt);
  row = {3.0f, 2.0f, -1.0f, -1.5f};
  EXPECT_EQ(rep.SampleInPlace(row), 1);  // 3 / 2 = 1.5 < 2
  EXPECT_FLOAT_EQ(row[0], 1.5f);
  EXPECT_FLOAT_EQ(row[2], -2.0f);
  EXPECT_FLOAT_EQ(row[3], -1.5f);  // not seen
  row = {3.0f, 2.0f, -1.0f, -1.5f};
  rep.SampleInPlace(row);  // token 1 is now in the output too
  EXPECT_FLOAT_EQ(row[1], 1.0f);

  // Presence once, frequency per occurrence, output tokens only.
  p = {};
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  Sampler pen(p, prompt);
  row = {0.0f, 1.0f, 0.0f};
  EXPECT_EQ(pen.SampleInPlace(row), 1);
  row = {0.0f, 1.0f, 0.0f};
  EXPECT_EQ(pen.SampleInPlace(row), 1);  // 1 - 0.75 = 0.25 still the largest
  row = {0.0f, 1.0f, 0.0f};
  EXPECT_EQ(pen.SampleInPlace(row), 0);  // 1 - 2·0.25 - 0.5 = 0
  EXPECT_FLOAT_EQ(row[1], 0.0f);
  EXPECT_FLOAT_EQ(row[0], 0.0f);  // in the prompt only: untouched
}

TEST(Sampler, ValidationNamesTheParameter) {
  auto msg = [](SamplingParams p) {
    Status st = ValidateSamplingParams(p, 100);
    return st.ok() ? std::string() : st.error().message;
  };
  SamplingParams p;
  EXPECT_EQ(msg(p), "");
  p.top_p = 1.5;
  EXPECT_NE(msg(p).find("top_p"), std::string::npos);
  p = {};
  p.temperature = -1;
  EXPECT_NE(msg(p).find("temperature"), std::string::npos);
  p = {};
  p.logit_bias = {{100, 1.0f}};
  EXPECT_NE(msg(p).find("logit_bias"), std::string::npos);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_NE(msg(p).find("repetition_penalty"), std::string::npos);
  p = {};
  p.presence_penalty = 3;
  EXPECT_NE(msg(p).find("presence_penalty"), std::string::npos);
}

TEST(Logprobs, LogSoftmaxAndTopList) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -5.0f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  const Logprobs lp = ComputeLogprobs(logits, 2, 3);
  EXPECT_NEAR(lp.chosen, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].token, 1);  // ties: lower id first
  EXPECT_EQ(lp.top[1].token, 3);
  EXPECT_EQ(lp.top[2].token, 2);
  EXPECT_NEAR(lp.top[0].logprob, 3.0 - std::log(z), 1e-6);
  EXPECT_TRUE(ComputeLogprobs(logits, 0, 0).top.empty());
}

// Token 0 is a special token without text; id k > 0 is the letter 'a' + k - 1. With `pairs`,
// text is released two tokens at a time (as a tokenizer holds back the bytes of a character).
class Letters : public TextDecoder {
 public:
  explicit Letters(bool pairs = false) : pairs_(pairs) {}
  std::unique_ptr<TextStream> NewStream(bool skip_special_tokens) const override {
    EXPECT_TRUE(skip_special_tokens);
    struct Stream : TextStream {
      explicit Stream(bool p) : pairs(p) {}
      std::string Push(int32_t id) override {
        held += id == 0 ? "" : std::string(1, static_cast<char>('a' + id - 1));
        if (pairs && ++count % 2 == 1) return "";
        return std::exchange(held, "");
      }
      bool pairs;
      int count = 0;
      std::string held;
    };
    return std::make_unique<Stream>(pairs_);
  }

 private:
  bool pairs_;
};

// Feeds tokens until the checker stops; returns how many tokens were fed.
int Feed(StopChecker& c, const std::vector<int32_t>& tokens, StopResult* r) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    *r = c.Check(tokens[i], static_cast<int>(i) + 1, 10 + static_cast<int>(i) + 1);
    if (r->reason != FinishReason::kNone) return static_cast<int>(i) + 1;
  }
  return static_cast<int>(tokens.size());
}

TEST(StopChecker, StopStringsAcrossTokensAndEarliestMatch) {
  Letters d;
  StopRules rules;
  rules.stop_strings = {"cde", "zz"};
  rules.max_tokens = 1000;
  rules.max_model_len = 1000;
  StopChecker c(rules, &d);
  StopResult r;
  // a b 0 c d e: "cde" spans three tokens; the special token adds no text.
  EXPECT_EQ(Feed(c, {1, 2, 0, 3, 4, 5, 6}, &r), 6);
  EXPECT_EQ(r.reason, FinishReason::kStop);
  EXPECT_EQ(r.stop_string, "cde");
  EXPECT_EQ(r.text_offset, 2u);

  // Long text: offsets stay absolute after the kept tail is trimmed.
  StopChecker long_text(rules, &d);
  std::vector<int32_t> t(300, 1);
  t.push_back(26);
  t.push_back(26);
  EXPECT_EQ(Feed(long_text, t, &r), 302);
  EXPECT_EQ(r.stop_string, "zz");
  EXPECT_EQ(r.text_offset, 300u);
}

TEST(StopChecker, HeldBackTextIsCheckedWhenReleased) {
  Letters d(/*pairs=*/true);
  StopRules rules;
  rules.stop_strings = {"bc"};
  rules.max_tokens = 100;
  rules.max_model_len = 1000;
  StopChecker c(rules, &d);
  StopResult r;
  // "bc" is complete with token 3, but its "c" is released with token 4.
  EXPECT_EQ(Feed(c, {1, 2, 3, 4, 5}, &r), 4);
  EXPECT_EQ(r.stop_string, "bc");
  EXPECT_EQ(r.text_offset, 1u);
}

TEST(StopChecker, MinTokensLengthAndStopIds) {
  Letters d;
  StopRules rules;
  rules.stop_ids = {7};
  rules.stop_strings = {"ab"};
  rules.min_tokens = 3;
  rules.max_tokens = 6;
  rules.max_model_len = 1000;
  StopChecker c(rules, &d);
  EXPECT_EQ(c.ids_to_mask(0), std::vector<int32_t>{7});
  EXPECT_TRUE(c.ids_to_mask(3).empty());
  StopResult r;
  // "ab" completes at token 2 (< min_tokens): ignored; the stop id at token 3 too; at 4 it stops.
  EXPECT_EQ(Feed(c, {1, 2, 7, 7}, &r), 4);
  EXPECT_EQ(r.reason, FinishReason::kStop);
  EXPECT_EQ(r.stop_token, 7);

  StopChecker len(rules, &d);
  EXPECT_EQ(Feed(len, {3, 3, 3, 3, 3, 3, 3}, &r), 6);
  EXPECT_EQ(r.reason, FinishReason::kLength);

  rules.max_model_len = 12;  // the sequence reaches 12 tokens with the 2nd output token
  StopChecker model_len(rules, &d);
  EXPECT_EQ(Feed(model_len, {3, 3, 3}, &r), 2);
  EXPECT_EQ(r.reason, FinishReason::kLength);
}

TEST(BlockHash, ChainsAndExtraKeys) {
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  EXPECT_EQ(HashBlock(0, a, ""), HashBlock(0, a, ""));
  EXPECT_NE(HashBlock(0, a, ""), HashBlock(0, b, ""));
  EXPECT_NE(HashBlock(0, a, ""), HashBlock(1, a, ""));
  EXPECT_NE(HashBlock(0, a, ""), HashBlock(0, a, "x"));
  Request r;
  r.prompt = std::vector<int32_t>(40, 7);
  r.cache_salt = "s";
  r.content_hashes = {{10, 12, "img"}};
  EXPECT_NE(BlockExtraKey(r, 0, 16).find("s"), std::string::npos);
  EXPECT_NE(BlockExtraKey(r, 0, 16).find("img"), std::string::npos);  // positions 10-15
  EXPECT_NE(BlockExtraKey(r, 1, 16).find("img"), std::string::npos);  // 16-21
  EXPECT_EQ(BlockExtraKey(r, 2, 16), "");                              // 32-47
}

}  // namespace
}  // namespace gs
