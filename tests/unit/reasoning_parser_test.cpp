// Gemma 4 reasoning parser: hand-checked splits of the shapes vLLM's gemma4 parser documents,
// agreement with the chat template's own strip_thinking rule, and streaming == one-shot for every
// split of the text (markers cut at any byte).
#include <gtest/gtest.h>

#include <random>

#include "chat/reasoning.h"
#include "unit/parser_test_util.h"

namespace gs {
namespace {

using test::ByteSplit;
using test::RandomSplit;
using test::RunReasoningStream;
using test::SplitAt;

struct Case {
  std::string text;
  std::optional<std::string> reasoning;
  std::string content;
  ReasoningOptions options = {};
};

std::vector<Case> Cases() {
  ReasoningOptions prefilled;
  prefilled.starts_in_reasoning = true;
  ReasoningOptions no_tool_end;
  no_tool_end.tool_call_ends_reasoning = false;
  const std::string call = "<|tool_call>call:f{}<tool_call|>";
  return {
      {"", std::nullopt, ""},
      {"The answer is 4.", std::nullopt, "The answer is 4."},
      {"<|channel>thought\nLet me add.<channel|>The answer is 4.", "Let me add.",
       "The answer is 4."},
      {"<|channel>thought\nonly thinking<channel|>", "only thinking", ""},
      {"<|channel>thought\nunterminated", "unterminated", ""},
      {"<|channel>thought\n", "", ""},
      {"<|channel>thought\n<channel|>Hi", "", "Hi"},  // the thinking-off prefill shape
      {"<|channel>no label<channel|>x", "no label", "x"},
      {"<|channel>thought<channel|>x", "thought", "x"},  // label needs its newline
      {"<|channel>thou", "thou", ""},
      {"<|channel>", "", ""},
      {"<|channel>thought\nthought\nx<channel|>", "thought\nx", ""},  // one label only
      {"pre <|channel>thought\nr<channel|> post", "r", "pre  post"},
      {"<|channel>thought\na<channel|>b<|channel>thought\nc<channel|>d", "ac", "bd"},
      {"<|channel>thought\na<|channel>thought\nb<channel|>c", "athought\nb", "c"},
      {"stray <channel|> end", std::nullopt, "stray  end"},
      {"<channel|>", std::nullopt, ""},
      {"<|channel>thought\nplan" + call, "plan", call},
      {"<|channel>thought\nplan" + call, "plan" + call, "", no_tool_end},
      {"<|channel>thought\nplan<channel|>" + call, "plan", call},
      {"continued<channel|>answer", "continued", "answer", prefilled},
      {"thought\nx<channel|>y", "thought\nx", "y", prefilled},
      {"no close", "no close", "", prefilled},
      {"", "", "", prefilled},
      {"<|chan <channel| <|channel <channel|", std::nullopt,
       "<|chan <channel| <|channel <channel|"},
      {"é中<|channel>thought\n😀\xff<channel|>\xfe", "😀\xff", "é中\xfe"},
  };
}

TEST(ReasoningParser, DocumentedShapes) {
  for (const Case& c : Cases()) {
    ReasoningResult r = ParseReasoning(c.text, c.options);
    EXPECT_EQ(r.reasoning, c.reasoning) << c.text;
    EXPECT_EQ(r.content, c.content) << c.text;
  }
}

TEST(ReasoningParser, ContentIsWhatTheTemplateKeeps) {
  // The template's strip_thinking (what the model is shown of its own past output) must agree with
  // the parser about what is content, on texts built from markers and near-markers.
  const std::vector<std::string> atoms = {"<|channel>", "<channel|>", "thought\n", "thought",
                                          "a",          "\n",         "<|chan",    "nel>",
                                          "<",          "|>",         "é",         "<|tool"};
  std::mt19937_64 rng(99);
  for (int i = 0; i < 5000; ++i) {
    std::string text;
    const int n = static_cast<int>(rng() % 10);
    for (int k = 0; k < n; ++k) text += atoms[rng() % atoms.size()];
    const ReasoningResult expected = test::StripThinkingModel(text);
    const ReasoningResult got = ParseReasoning(text);
    ASSERT_EQ(got.content, expected.content) << text;
    ASSERT_EQ(got.reasoning, expected.reasoning) << text;
  }
}

TEST(ReasoningParserStream, HoldsBackOnlyWhatCouldBeAMarker) {
  ReasoningStreamParser p;
  ReasoningDelta d = p.Feed("Hello <|chan");
  EXPECT_EQ(d.content, "Hello ");
  d = p.Feed("nel>thou");
  EXPECT_TRUE(d.empty());  // could still be the label
  EXPECT_TRUE(p.in_reasoning());
  d = p.Feed("ght\nStep 1<chan");
  EXPECT_EQ(d.reasoning, "Step 1");
  EXPECT_EQ(d.content, "");
  d = p.Feed("nel|>Answer <");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Answer ");
  EXPECT_FALSE(p.in_reasoning());
  d = p.Feed("b>");
  EXPECT_EQ(d.content, "<b>");
  d = p.Feed("<|channel");
  EXPECT_EQ(d.content, "");
  d = p.Finish();
  EXPECT_EQ(d.content, "<|channel");
}

TEST(ReasoningParserStream, LabelDecidedAsSoonAsItDiverges) {
  ReasoningStreamParser p;
  EXPECT_TRUE(p.Feed("<|channel>th").empty());
  EXPECT_EQ(p.Feed("ink").reasoning, "think");
}

void ExpectStreamMatches(const Case& c, const std::vector<std::string>& pieces) {
  const ReasoningResult whole = ParseReasoning(c.text, c.options);
  const ReasoningResult streamed = RunReasoningStream(pieces, c.options);
  ASSERT_EQ(streamed.reasoning, whole.reasoning) << c.text;
  ASSERT_EQ(streamed.content, whole.content) << c.text;
}

TEST(ReasoningParserStream, EveryTwoWaySplitMatchesOneShot) {
  for (const Case& c : Cases()) {
    for (size_t cut = 0; cut <= c.text.size(); ++cut)
      ExpectStreamMatches(c, SplitAt(c.text, {cut}));
    ExpectStreamMatches(c, ByteSplit(c.text));
  }
}

TEST(ReasoningParserStream, EveryThreeWaySplitOfALongOutputMatchesOneShot) {
  const Case c{
      "A<|channel>thought\nr1<|channel>r2<channel|>B<channel|>C<|channel>thought\n"
      "<|tool_call>D",
      "r1r2", "ABC<|tool_call>D"};
  ASSERT_EQ(ParseReasoning(c.text).reasoning, c.reasoning);
  ASSERT_EQ(ParseReasoning(c.text).content, c.content);
  for (size_t i = 0; i <= c.text.size(); ++i) {
    for (size_t j = i; j <= c.text.size(); ++j) ExpectStreamMatches(c, SplitAt(c.text, {i, j}));
  }
}

TEST(ReasoningParserStream, RandomSplitsMatchOneShot) {
  std::mt19937_64 rng(4321);
  for (const Case& c : Cases()) {
    for (int i = 0; i < 300; ++i) ExpectStreamMatches(c, RandomSplit(c.text, rng, 10));
  }
}

}  // namespace
}  // namespace gs
