// Random and mutated model outputs through the reasoning and tool-call parsers: truncated calls,
// unbalanced brackets, stray and partial markers, bad numbers, invalid UTF-8, NUL bytes. Nothing
// may crash (this runs under ASan/UBSan), nothing may be lost (content plus the raw text of the
// extracted calls is the input; reasoning and content are what the template's strip_thinking
// says), every extracted call must carry valid JSON, and streaming must equal one-shot parsing.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "chat/reasoning.h"
#include "chat/tool_calls.h"
#include "unit/parser_test_util.h"
#include "util/str.h"

namespace gs {
namespace {

const std::vector<std::string>& Fragments() {
  static const std::vector<std::string> f = {"<|tool_call>",
                                             "<tool_call|>",
                                             "<|\"|>",
                                             "<|channel>",
                                             "<channel|>",
                                             "thought\n",
                                             "call:",
                                             "<|tool",
                                             "_call>",
                                             "<tool_",
                                             "call|>",
                                             "<|\"",
                                             "|>",
                                             "<|chan",
                                             "<chan",
                                             "nel|>",
                                             "<",
                                             "|",
                                             "f",
                                             "get_weather",
                                             "a.b-c",
                                             "{",
                                             "}",
                                             "[",
                                             "]",
                                             ",",
                                             ":",
                                             " ",
                                             "\n",
                                             "\t",
                                             "key",
                                             "x y",
                                             "1",
                                             "-0.5",
                                             "1e-05",
                                             "1e+16",
                                             "01",
                                             "1.",
                                             ".5",
                                             "+1",
                                             "-",
                                             "e",
                                             "123456789012345678901234",
                                             "true",
                                             "false",
                                             "null",
                                             "None",
                                             "nil",
                                             "True",
                                             "hello",
                                             "é",
                                             "中",
                                             "😀",
                                             "\xff",
                                             "\xc3",
                                             "\xed\xa0\x80",
                                             "\xf4\x90\x80\x80",
                                             std::string(1, '\0'),
                                             "\x01",
                                             "\"",
                                             "\\"};
  return f;
}

std::string RandomGemmaValue(std::mt19937_64& rng, int depth);

std::string RandomGemmaObjectBody(std::mt19937_64& rng, int depth) {
  std::string out;
  const int n = static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) {
    if (i) out += ",";
    out += StrCat("k", rng() % 5, ":", RandomGemmaValue(rng, depth + 1));
  }
  return out;
}

// A well-formed Gemma argument value (the material the mutations start from).
std::string RandomGemmaValue(std::mt19937_64& rng, int depth) {
  switch (rng() % (depth < 3 ? 7 : 5)) {
    case 0:
      return StrCat("<|\"|>s", rng() % 100, ",{}:<|\"|>");
    case 1:
      return std::to_string(static_cast<int>(rng() % 2001) - 1000);
    case 2:
      return "2.5e-07";
    case 3:
      return rng() % 2 ? "true" : "None";
    case 4:
      return "<|\"|>é😀\n<|\"|>";
    case 5:
      return "{" + RandomGemmaObjectBody(rng, depth) + "}";
    default: {
      std::string out = "[";
      const int n = static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i) out += (i ? "," : "") + RandomGemmaValue(rng, depth + 1);
      return out + "]";
    }
  }
}

std::string RandomWellFormedOutput(std::mt19937_64& rng) {
  std::string out;
  if (rng() % 2) out += "<|channel>thought\nplan {a:1}<channel|>";
  if (rng() % 3 == 0) out += "Let me look.";
  const int calls = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < calls; ++i) {
    out += StrCat("<|tool_call>call:fn", i, "{", RandomGemmaObjectBody(rng, 0)) + "}<tool_call|>";
  }
  if (rng() % 3 == 0) out += "done";
  return out;
}

std::string RandomSoup(std::mt19937_64& rng) {
  const auto& f = Fragments();
  std::string out;
  const int n = static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) out += f[rng() % f.size()];
  return out;
}

std::string Mutate(std::string s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits; ++e) {
    const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:
        s.resize(at);
        break;  // truncated output
      case 1:
        s.erase(at, rng() % 8);
        break;
      case 2:
        s.insert(at, Fragments()[rng() % Fragments().size()]);
        break;
      case 3:
        if (at < s.size()) s[at] = static_cast<char>(rng() % 256);
        break;
      case 4:
        if (at < s.size()) s.insert(at, s.substr(at, rng() % 16));
        break;
      default:
        if (at < s.size()) s.erase(at, 1);
        break;
    }
  }
  return s;
}

ToolCallParserOptions Options(bool stream_arguments) {
  ToolCallParserOptions o;
  o.make_id = MakeSeededToolCallIdGenerator(9);
  o.stream_arguments = stream_arguments;
  o.max_depth = 8;
  return o;
}

void CheckToolCalls(const std::string& text, std::mt19937_64& rng) {
  const ToolCallParseResult r = ParseToolCalls(text, Options(false));
  ASSERT_EQ(test::Reassemble(r), text);
  if (text.find("<|tool_call>") == std::string::npos) {
    ASSERT_TRUE(r.calls.empty());
    ASSERT_EQ(r.content, text);
  }
  for (const ToolCall& c : r.calls) {
    ASSERT_FALSE(c.name.empty());
    ASSERT_EQ(c.raw.rfind("<|tool_call>call:" + c.name + "{", 0), 0u);
    ASSERT_TRUE(c.raw.ends_with("<tool_call|>"));
    nlohmann::json args;
    ASSERT_NO_THROW(args = nlohmann::json::parse(c.arguments)) << c.arguments;
    ASSERT_TRUE(args.is_object());
  }
  const std::vector<std::string> pieces =
      rng() % 4 == 0 ? test::ByteSplit(text) : test::RandomSplit(text, rng, 8);
  const test::ToolStreamOutcome whole = test::RunToolStream(pieces, Options(false));
  ASSERT_EQ(whole.content, r.content);
  ASSERT_EQ(whole.calls, test::AsStreamed(r.calls));
  ASSERT_TRUE(whole.well_ordered);
  const test::ToolStreamOutcome incremental = test::RunToolStream(pieces, Options(true));
  ASSERT_EQ(incremental.content, r.content);
  ASSERT_TRUE(incremental.well_ordered);
  ASSERT_GE(incremental.calls.size(), r.calls.size());
}

void CheckReasoning(const std::string& text, std::mt19937_64& rng) {
  ReasoningOptions template_rules;
  template_rules.tool_call_ends_reasoning = false;
  const ReasoningResult r = ParseReasoning(text, template_rules);
  const ReasoningResult expected = test::StripThinkingModel(text);
  ASSERT_EQ(r.content, expected.content);
  ASSERT_EQ(r.reasoning, expected.reasoning);
  for (bool tool_end : {false, true}) {
    for (bool prefilled : {false, true}) {
      ReasoningOptions o;
      o.tool_call_ends_reasoning = tool_end;
      o.starts_in_reasoning = prefilled;
      const ReasoningResult one = ParseReasoning(text, o);
      const ReasoningResult streamed = test::RunReasoningStream(test::RandomSplit(text, rng, 8), o);
      ASSERT_EQ(streamed.content, one.content);
      ASSERT_EQ(streamed.reasoning, one.reasoning);
      if (!prefilled && text.find("<|channel>") == std::string::npos &&
          text.find("<channel|>") == std::string::npos) {
        ASSERT_EQ(one.content, text);
        ASSERT_FALSE(one.reasoning.has_value());
      }
    }
  }
}

TEST(ParserFuzz, RandomAndMutatedOutputs) {
  std::mt19937_64 rng(20260402);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int inputs = 0, with_calls = 0;
  for (int i = 0; i < 30000 && std::chrono::steady_clock::now() < deadline; ++i) {
    std::string text;
    switch (i % 3) {
      case 0:
        text = RandomSoup(rng);
        break;
      case 1:
        text = Mutate(RandomWellFormedOutput(rng), rng);
        break;
      default:
        text = RandomWellFormedOutput(rng);
        break;
    }
    SCOPED_TRACE(testing::Message()
                 << "input #" << i << ": "
                 << nlohmann::json(text).dump(-1, ' ', false,
                                              nlohmann::json::error_handler_t::replace));
    CheckToolCalls(text, rng);
    if (HasFatalFailure()) return;
    CheckReasoning(text, rng);
    if (HasFatalFailure()) return;
    // The server's pipeline: reasoning first, its content into the tool parser.
    const ToolCallParseResult piped = ParseToolCalls(ParseReasoning(text).content, Options(false));
    with_calls += !piped.calls.empty();
    if (i % 3 == 2) {
      ASSERT_FALSE(piped.calls.empty()) << "a well-formed output lost its calls";
    }
    ++inputs;
  }
  std::printf("fuzzed %d inputs, %d of them with extracted calls\n", inputs, with_calls);
  EXPECT_GT(inputs, 1000);
}

}  // namespace
}  // namespace gs
