// The tool-call constraint (server/tool_call_constraint.h) on make-demo-model's tokenizer, driven
// without a model: whatever the logits (flat, random, or pushing end-of-turn), decoding through the
// constraint yields text in which the independent tool-call parser (chat/tool_calls.h) finds one
// well-formed call of an allowed function whose arguments nlohmann parses as a JSON object.
#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "chat/tool_calls.h"
#include "runtime/sampling.h"
#include "server/tool_call_constraint.h"
#include "tools/demo_tokenizer.h"

namespace gs::server {
namespace {

constexpr int kVocab = 1024;

const Tokenizer& DemoTokenizer() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::FromJson(DemoTokenizerJson(kVocab).dump(), "demo tokenizer");
    EXPECT_TRUE(t.ok()) << t.error().message;
    return std::move(*t);
  }();
  return tok;
}

std::shared_ptr<const TokenPieces> Pieces() {
  static const auto pieces = std::make_shared<const TokenPieces>(DemoTokenizer());
  return pieces;
}

TokenConstraintFactory Factory(std::vector<std::string> names, int close_after) {
  ToolCallConstraintOptions o;
  o.function_names = std::move(names);
  o.close_after_tokens = close_after;
  auto f = MakeToolCallConstraint(Pieces(), DemoTokenizer(), o);
  EXPECT_TRUE(f.ok()) << f.error().message;
  return *f;
}

// Decodes through the constraint until the text holds a complete call (or `steps` tokens);
// `logits_for` fills each step's row, `pick` chooses from the masked row.
template <typename Logits, typename Pick>
std::vector<int32_t> Decode(TokenConstraint& c, int steps, Logits logits_for, Pick pick) {
  std::vector<int32_t> out;
  std::vector<float> row(kVocab);
  for (int i = 0; i < steps; ++i) {
    logits_for(row);
    c.Mask(row);
    const int32_t t = pick(row);
    c.Accept(t);
    out.push_back(t);
    if (!ParseToolCalls(DemoTokenizer().Decode(out, false)).calls.empty()) break;
  }
  return out;
}

void ExpectOneCall(const std::vector<int32_t>& ids, const std::set<std::string>& names) {
  const std::string text = DemoTokenizer().Decode(ids, false);
  const ToolCallParseResult r = ParseToolCalls(text);
  ASSERT_EQ(r.calls.size(), 1u) << text;
  EXPECT_TRUE(names.count(r.calls[0].name)) << r.calls[0].name;
  const auto args = nlohmann::json::parse(r.calls[0].arguments, nullptr, false);
  EXPECT_TRUE(args.is_object()) << r.calls[0].arguments;
  EXPECT_EQ(r.content, "") << "raw call: " << r.calls[0].raw;
}

TEST(ToolCallConstraint, FirstTokenIsTheCallOpener) {
  auto c = Factory({"get_weather"}, 0)();
  std::vector<float> row(kVocab, 0.0f);
  c->Mask(row);
  const int32_t open = DemoTokenizer().TokenToId("<|tool_call>");
  for (int i = 0; i < kVocab; ++i) {
    EXPECT_EQ(std::isfinite(row[static_cast<size_t>(i)]), i == open) << i;
  }
}

TEST(ToolCallConstraint, FlatLogitsGreedyGiveACall) {
  for (const std::vector<std::string>& names :
       {std::vector<std::string>{"get_weather", "get_time"}, std::vector<std::string>{"f"}}) {
    auto c = Factory(names, 24)();
    const auto ids = Decode(
        *c, 200, [](std::vector<float>& r) { std::fill(r.begin(), r.end(), 0.0f); },
        [](const std::vector<float>& r) { return Argmax(r); });
    ExpectOneCall(ids, {names.begin(), names.end()});
  }
}

TEST(ToolCallConstraint, RandomLogitsSampledGiveACall) {
  for (uint64_t seed = 1; seed <= 25; ++seed) {
    auto c = Factory({"search", "lookup.v2", "get-time"}, 30)();
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    SamplingParams p;
    p.temperature = 1.0;
    p.seed = seed;
    Sampler sampler(p);
    const auto ids = Decode(
        *c, 400, [&](std::vector<float>& r) { for (float& x : r) x = normal(rng); },
        [&](std::vector<float>& r) { return sampler.SampleInPlace(r); });
    SCOPED_TRACE(seed);
    ExpectOneCall(ids, {"search", "lookup.v2", "get-time"});
  }
}

TEST(ToolCallConstraint, EndOfTurnIsNeverAllowedInsideACall) {
  const int32_t end_of_turn = DemoTokenizer().TokenToId("<turn|>");
  const int32_t eos = DemoTokenizer().TokenToId("<eos>");
  auto c = Factory({"get_weather"}, 20)();
  bool saw_masked = false;
  const auto ids = Decode(*c, 200,
                       [&](std::vector<float>& r) {
                         std::fill(r.begin(), r.end(), 0.0f);
                         r[static_cast<size_t>(end_of_turn)] = 100.0f;
                         r[static_cast<size_t>(eos)] = 100.0f;
                       },
                       [&](const std::vector<float>& r) {
                         saw_masked = saw_masked || std::isinf(r[static_cast<size_t>(end_of_turn)]);
                         EXPECT_TRUE(std::isinf(r[static_cast<size_t>(end_of_turn)]));
                         EXPECT_TRUE(std::isinf(r[static_cast<size_t>(eos)]));
                         return Argmax(r);
                       });
  EXPECT_TRUE(saw_masked);
  ExpectOneCall(ids, {"get_weather"});
}

TEST(ToolCallConstraint, NamesACallCannotCarryAreRefused) {
  ToolCallConstraintOptions o;
  o.function_names = {"has space", ""};
  auto f = MakeToolCallConstraint(Pieces(), DemoTokenizer(), o);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("tool_choice"), std::string::npos);
}

}  // namespace
}  // namespace gs::server
