// Round trip through the real Gemma 4 chat template: tests/oracle/render_tool_calls.py renders
// assistant messages with seeded random tool calls (nested objects and arrays, strings full of
// quotes, braces, commas, newlines, control characters, near-markers and unicode; big and small
// ints, floats, booleans, null), optional reasoning and text content, with Python jinja2 the way
// transformers does. The model-side text is parsed back here by the reasoning parser and then the
// tool-call parser, one-shot and streamed in random pieces; every call must come back with its name
// and with arguments byte-identical to Python's json.dumps of the original arguments (what vLLM
// returns), and the reasoning and content must be the ones that were rendered.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "chat/reasoning.h"
#include "chat/tool_calls.h"
#include "unit/parser_test_util.h"

namespace gs {
namespace {

struct Rendered {
  std::vector<nlohmann::json> cases;
  bool available = false;
};

// Runs the oracle script once; empty when python3 or jinja2 is missing.
Rendered RenderCases(int seed, int count) {
  Rendered out;
  if (std::system("python3 -c 'import jinja2' >/dev/null 2>&1") != 0) return out;
  const std::string command = std::string("python3 ") + GS_SOURCE_DIR +
                              "/tests/oracle/render_tool_calls.py --seed " + std::to_string(seed) +
                              " --count " + std::to_string(count);
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) text.append(buffer, n);
  const int status = pclose(pipe);
  out.available = true;
  EXPECT_EQ(status, 0) << command;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) out.cases.push_back(nlohmann::json::parse(line));
  EXPECT_EQ(static_cast<int>(out.cases.size()), count) << command;
  return out;
}

struct Parsed {
  std::optional<std::string> reasoning;
  std::string content;
  std::vector<test::StreamedCall> calls;
};

Parsed ParseOneShot(const std::string& text) {
  ReasoningResult r = ParseReasoning(text);
  ToolCallParserOptions options;
  options.make_id = MakeSeededToolCallIdGenerator(3);
  ToolCallParseResult t = ParseToolCalls(r.content, options);
  return {r.reasoning, t.content, test::AsStreamed(t.calls)};
}

// The server's pipeline: decoded pieces -> reasoning parser -> its content -> tool-call parser.
Parsed ParseStreamed(const std::vector<std::string>& pieces, bool stream_arguments) {
  ReasoningStreamParser reasoning;
  ToolCallParserOptions options;
  options.make_id = MakeSeededToolCallIdGenerator(3);
  options.stream_arguments = stream_arguments;
  ToolCallStreamParser tools(options);
  Parsed out;
  std::string thought;
  std::vector<std::string> content_pieces;
  for (const std::string& piece : pieces) {
    ReasoningDelta d = reasoning.Feed(piece);
    thought += d.reasoning;
    content_pieces.push_back(d.content);
  }
  ReasoningDelta d = reasoning.Finish();
  thought += d.reasoning;
  content_pieces.push_back(d.content);
  if (reasoning.saw_reasoning()) out.reasoning = thought;
  test::ToolStreamOutcome t = test::RunToolStream(content_pieces, options);
  out.content = t.content;
  out.calls = t.calls;
  EXPECT_TRUE(t.well_ordered);
  return out;
}

void ExpectMatchesRender(const nlohmann::json& c, const Parsed& got, const std::string& how) {
  const std::string text = c["text"];
  SCOPED_TRACE(how + " of " + c.dump());
  if (c["reasoning"].is_null()) {
    EXPECT_FALSE(got.reasoning.has_value());
  } else {
    EXPECT_EQ(got.reasoning.value_or("<none>"), c["reasoning"].get<std::string>());
  }
  EXPECT_EQ(got.content, c["content"].get<std::string>());
  const nlohmann::json& calls = c["calls"];
  ASSERT_EQ(got.calls.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(got.calls[i].name, calls[i]["name"].get<std::string>());
    EXPECT_EQ(got.calls[i].arguments, calls[i]["arguments"].get<std::string>());
    // And as values: what a client's JSON parser makes of it.
    EXPECT_EQ(nlohmann::json::parse(got.calls[i].arguments), calls[i]["arguments_value"]);
  }
}

TEST(ToolCallRoundTrip, TemplateRenderedCallsParseBackToTheirArguments) {
  const Rendered rendered = RenderCases(/*seed=*/20260401, /*count=*/500);
  if (!rendered.available) {
    GTEST_SKIP() << "\n*** SKIPPED: python3 with jinja2 is needed for the Gemma 4 template oracle "
                    "(tests/oracle/render_tool_calls.py) ***\n";
  }
  std::mt19937_64 rng(11);
  size_t calls = 0, with_reasoning = 0, with_content = 0;
  for (size_t i = 0; i < rendered.cases.size(); ++i) {
    const nlohmann::json& c = rendered.cases[i];
    const std::string text = c["text"];
    calls += c["calls"].size();
    with_reasoning += !c["reasoning"].is_null();
    with_content += !c["content"].get<std::string>().empty();
    ExpectMatchesRender(c, ParseOneShot(text), "one-shot parse");
    for (int k = 0; k < 4; ++k) {
      ExpectMatchesRender(c, ParseStreamed(test::RandomSplit(text, rng, 40), k % 2 == 1),
                          "streamed parse");
    }
    if (i < 25) {
      ExpectMatchesRender(c, ParseStreamed(test::ByteSplit(text), false), "byte-wise parse");
      ExpectMatchesRender(c, ParseStreamed(test::ByteSplit(text), true), "byte-wise parse");
    }
    if (HasFatalFailure() || HasNonfatalFailure()) break;  // one readable failure is enough
  }
  // The generator must really have covered the shapes this test claims to cover.
  EXPECT_GT(calls, 700u);
  EXPECT_GT(with_reasoning, 150u);
  EXPECT_GT(with_content, 100u);
}

}  // namespace
}  // namespace gs
