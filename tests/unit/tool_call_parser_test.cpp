// Gemma 4 tool-call parser: hand-checked translations of the template's call syntax to the JSON
// that Python's json.dumps(..., ensure_ascii=False) writes (what vLLM returns), malformed calls
// degrading to content, ids, and streaming == one-shot for every split of the text.
#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "chat/tool_calls.h"
#include "util/str.h"
#include "unit/parser_test_util.h"

namespace gs {
namespace {

using test::ByteSplit;
using test::RandomSplit;
using test::Reassemble;
using test::RunToolStream;
using test::SplitAt;

const std::string kQ = "<|\"|>";  // Gemma's string delimiter

std::string Call(const std::string& name, const std::string& args) {
  return "<|tool_call>call:" + name + "{" + args + "}<tool_call|>";
}

ToolCallParserOptions Seeded(uint64_t seed = 7, bool stream_arguments = false) {
  ToolCallParserOptions o;
  o.make_id = MakeSeededToolCallIdGenerator(seed);
  o.stream_arguments = stream_arguments;
  return o;
}

// Arguments of the single call in `text`, or a marker string when there is not exactly one.
std::string ArgsOf(const std::string& text) {
  ToolCallParseResult r = ParseToolCalls(text);
  if (r.calls.size() != 1) return StrCat("<", r.calls.size(), " calls>");
  EXPECT_EQ(r.content, "");
  return r.calls[0].arguments;
}

TEST(ToolCallParser, TemplateExampleFromReference) {
  // Rendered by the real template with Python jinja2 (reference §2.3 item 5).
  const std::string text =
      "<|tool_call>call:get_weather{city:<|\"|>Zürich<|\"|>,days:2,flag:false,"
      "obj:{a:[1,<|\"|>t<|\"|>],B:1},unit:<|\"|>c<|\"|>}<tool_call|>";
  ToolCallParseResult r = ParseToolCalls(text, Seeded());
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.content, "");
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments,
            R"({"city": "Zürich", "days": 2, "flag": false, "obj": {"a": [1, "t"], "B": 1}, )"
            R"("unit": "c"})");
  EXPECT_EQ(r.calls[0].raw, text);
  EXPECT_EQ(nlohmann::json::parse(r.calls[0].arguments)["obj"]["a"][1], "t");
}

TEST(ToolCallParser, ValueKinds) {
  EXPECT_EQ(ArgsOf(Call("f", "")), "{}");
  EXPECT_EQ(ArgsOf(Call("f", "a:{},b:[],c:" + kQ + kQ)), R"({"a": {}, "b": [], "c": ""})");
  EXPECT_EQ(ArgsOf(Call("f", "n:None,m:null,t:true,u:True,v:False")),
            R"({"n": null, "m": null, "t": true, "u": true, "v": false})");
  EXPECT_EQ(ArgsOf(Call("f", "a:-0.5,b:1e-05,c:1e+16,d:12345678901234567890123,e:0,f:-0.0")),
            R"({"a": -0.5, "b": 1e-05, "c": 1e+16, "d": 12345678901234567890123, "e": 0, )"
            R"("f": -0.0})");
  EXPECT_EQ(ArgsOf(Call("f", "x:[[1,[2]],{k:[" + kQ + "s" + kQ + "]}]")),
            R"({"x": [[1, [2]], {"k": ["s"]}]})");
  // Keys: unquoted as the template writes them, or <|"|>-quoted (format_argument's escape_keys).
  EXPECT_EQ(ArgsOf(Call("f", kQ + "my key" + kQ + ":1,first name:2,:3,é:4")),
            R"({"my key": 1, "first name": 2, "": 3, "é": 4})");
}

TEST(ToolCallParser, StringsAreRawUntilTheDelimiter) {
  // Quotes, backslashes, braces, commas, colons, brackets, markers and control bytes inside
  // strings are text; JSON escapes exactly what json.dumps escapes.
  const std::string s =
      "he said \"hi\" \\ {a,b}:[x] <|x <| |> <tool_call|> <|tool_call>\n\t\r\b\f"
      "\x01\x1f\x7f é 中 😀";
  EXPECT_EQ(ArgsOf(Call("f", "s:" + kQ + s + kQ)),
            "{\"s\": \"he said \\\"hi\\\" \\\\ {a,b}:[x] <|x <| |> <tool_call|> <|tool_call>"
            "\\n\\t\\r\\b\\f\\u0001\\u001f\x7f é 中 😀\"}");
  // A partial delimiter right before the real one.
  EXPECT_EQ(ArgsOf(Call("f", "s:" + kQ + "a<|\"|" + kQ)), R"({"s": "a<|\"|"})");
  EXPECT_EQ(ArgsOf(Call("f", "s:" + kQ + "<" + kQ)), R"({"s": "<"})");
}

TEST(ToolCallParser, WhitespaceBetweenTokens) {
  EXPECT_EQ(ArgsOf("<|tool_call>call:f{ a : 1 ,\n b : [ 1 , " + kQ + "x" + kQ +
                   " ] , c : { d : true } }\n<tool_call|>"),
            R"({"a": 1, "b": [1, "x"], "c": {"d": true}})");
}

TEST(ToolCallParser, SeveralCallsAndContent) {
  const std::string text = "Sure.\n" + Call("a", "") + Call("b.c-d_1", "x:1") + " done";
  ToolCallParseResult r = ParseToolCalls(text, Seeded());
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.content, "Sure.\n done");
  EXPECT_EQ(r.calls[0].name, "a");
  EXPECT_EQ(r.calls[0].arguments, "{}");
  EXPECT_EQ(r.calls[1].name, "b.c-d_1");
  EXPECT_EQ(r.calls[1].arguments, R"({"x": 1})");
  EXPECT_EQ(r.calls[0].content_offset, 6u);
  EXPECT_EQ(r.calls[1].content_offset, 6u);
  EXPECT_NE(r.calls[0].id, r.calls[1].id);
  EXPECT_EQ(Reassemble(r), text);
}

TEST(ToolCallParser, MalformedCallsStayContent) {
  const std::vector<std::string> bad = {
      "<|tool_call>",
      "<|tool_call>call:f{a:1",                // unterminated
      "<|tool_call>call:f{a:1}",               // no <tool_call|>
      "<|tool_call>call:f{a:1}}<tool_call|>",  // extra brace
      "<|tool_call>call:f{a:[1}<tool_call|>",  // bad nesting
      "<|tool_call>call:f{a:{b:1]}<tool_call|>",
      "<|tool_call>call:f{a:1]<tool_call|>",
      "<|tool_call>call:f{a:01}<tool_call|>",  // bad numbers
      "<|tool_call>call:f{a:1.}<tool_call|>",
      "<|tool_call>call:f{a:.5}<tool_call|>",
      "<|tool_call>call:f{a:+1}<tool_call|>",
      "<|tool_call>call:f{a:1e}<tool_call|>",
      "<|tool_call>call:f{a:--1}<tool_call|>",
      "<|tool_call>call:f{a:0x10}<tool_call|>",
      "<|tool_call>call:f{a:nan}<tool_call|>",
      "<|tool_call>call:f{a:inf}<tool_call|>",
      "<|tool_call>call:f{a:1 2}<tool_call|>",
      "<|tool_call>call:f{a:hello}<tool_call|>",  // bare word
      "<|tool_call>call:f{a:1,}<tool_call|>",     // trailing commas
      "<|tool_call>call:f{a:[1,]}<tool_call|>",
      "<|tool_call>call:f{a}<tool_call|>",   // no colon
      "<|tool_call>call:f{a:}<tool_call|>",  // no value
      "<|tool_call>call:f{,a:1}<tool_call|>",
      "<|tool_call>call:{a:1}<tool_call|>",      // empty name
      "<|tool_call>call:my f{a:1}<tool_call|>",  // bad name
      "<|tool_call>f{a:1}<tool_call|>",          // no call: prefix
      "<|tool_call> call:f{}<tool_call|>",
      "<|tool_call>call:f{a:<|\"|>x}<tool_call|>",  // unterminated string
      "<|tool_call>call:f{a:<|\"x<|\"|>}<tool_call|>",
      "<|tool_call>call:f{a:<|\"|>\xff<|\"|>}<tool_call|>",          // invalid UTF-8
      "<|tool_call>call:f{a:<|\"|>\xc3<|\"|>}<tool_call|>",          // truncated sequence
      "<|tool_call>call:f{a:<|\"|>\xed\xa0\x80<|\"|>}<tool_call|>",  // surrogate
      "<|tool_call>call:f{a:<|\"|>\xc0\xaf<|\"|>}<tool_call|>",      // overlong
      "<|tool_call>call:f{a:1}<tool_call>",
      "<|tool_call>call:f{a:1} x<tool_call|>",
  };
  for (const std::string& text : bad) {
    for (const std::string& wrapped : {text, "before " + text + " after"}) {
      ToolCallParseResult r = ParseToolCalls(wrapped);
      EXPECT_TRUE(r.calls.empty()) << wrapped;
      EXPECT_EQ(r.content, wrapped);
    }
  }
}

TEST(ToolCallParser, DepthLimit) {
  std::string deep = "<|tool_call>call:f{a:";
  for (int i = 0; i < 70; ++i) deep += "[";
  for (int i = 0; i < 70; ++i) deep += "]";
  deep += "}<tool_call|>";
  EXPECT_TRUE(ParseToolCalls(deep).calls.empty());
  ToolCallParserOptions o;
  o.max_depth = 100;
  EXPECT_EQ(ParseToolCalls(deep, o).calls.size(), 1u);
}

TEST(ToolCallParser, SizeLimit) {
  const std::string text = Call("f", "s:" + kQ + std::string(100, 'x') + kQ);
  ToolCallParserOptions o;
  o.max_call_bytes = text.size();
  EXPECT_EQ(ParseToolCalls(text, o).calls.size(), 1u);
  o.max_call_bytes = text.size() - 1;
  ToolCallParseResult r = ParseToolCalls(text, o);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, text);
}

TEST(ToolCallParser, ScanningResumesAfterABadMarker) {
  const std::string good = Call("g", "k:" + kQ + "v" + kQ);
  {
    const std::string text = "<|tool_call>oops " + good + " tail";
    ToolCallParseResult r = ParseToolCalls(text);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(r.calls[0].name, "g");
    EXPECT_EQ(r.content, "<|tool_call>oops  tail");
    EXPECT_EQ(r.calls[0].content_offset, 17u);
    EXPECT_EQ(Reassemble(r), text);
  }
  {
    // An unterminated string swallows the rest of the text; at the end the call is abandoned and
    // the later, well-formed call is still found.
    const std::string text = "<|tool_call>call:f{a:<|\"|>x<tool_call|> and " + good;
    ToolCallParseResult r = ParseToolCalls(text);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(r.calls[0].name, "g");
    EXPECT_EQ(r.content, "<|tool_call>call:f{a:<|\"|>x<tool_call|> and ");
    EXPECT_EQ(Reassemble(r), text);
  }
  {
    const std::string text = "a <tool_call|> b";  // a stray end marker is content
    ToolCallParseResult r = ParseToolCalls(text);
    EXPECT_TRUE(r.calls.empty());
    EXPECT_EQ(r.content, text);
  }
}

TEST(ToolCallParser, Ids) {
  const std::regex shape("call_[A-Za-z0-9]{24}");
  const std::string a = MakeRandomToolCallId(), b = MakeRandomToolCallId();
  EXPECT_TRUE(std::regex_match(a, shape)) << a;
  EXPECT_NE(a, b);
  auto g1 = MakeSeededToolCallIdGenerator(42), g2 = MakeSeededToolCallIdGenerator(42);
  auto g3 = MakeSeededToolCallIdGenerator(43);
  const std::string x = g1();
  EXPECT_TRUE(std::regex_match(x, shape)) << x;
  EXPECT_EQ(x, g2());
  EXPECT_NE(x, g3());
  EXPECT_NE(x, g1());
  // The parser takes ids from the injected generator, in call order.
  auto expected = MakeSeededToolCallIdGenerator(5);
  ToolCallParseResult r = ParseToolCalls(Call("a", "") + Call("b", ""), Seeded(5));
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].id, expected());
  EXPECT_EQ(r.calls[1].id, expected());
}

TEST(ToolCallParser, OpenAiJsonShapes) {
  ToolCall call{"call_x", "f", R"({"a": 1})", "", 0};
  EXPECT_EQ(
      ToolCallToJson(call),
      nlohmann::json::parse(
          R"({"id":"call_x","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}})"));
  EXPECT_EQ(
      ToolCallDeltaToJson({0, "call_x", "f", ""}),
      nlohmann::json::parse(
          R"({"index":0,"id":"call_x","type":"function","function":{"name":"f","arguments":""}})"));
  EXPECT_EQ(ToolCallDeltaToJson({1, "", "", "{\"a"}),
            nlohmann::json::parse(R"({"index":1,"function":{"arguments":"{\"a"}})"));
}

TEST(ToolCallParserStream, HoldsBackOnlyWhatCouldBeAMarker) {
  ToolCallStreamParser p(Seeded());
  EXPECT_EQ(p.Feed("Hello <|tool").content, "Hello ");
  EXPECT_EQ(p.Feed("box>").content, "<|toolbox>");
  EXPECT_EQ(p.Feed("<").content, "");
  ToolCallStreamDelta d = p.Feed("|tool_call>call:f{a:1}<tool_call");
  EXPECT_EQ(d.content, "");
  EXPECT_TRUE(d.tool_calls.empty());
  d = p.Feed("|>after");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"a": 1})");
  EXPECT_EQ(d.content, "after");
  EXPECT_EQ(p.Feed("x <|").content, "x ");
  EXPECT_EQ(p.Finish().content, "<|");
}

TEST(ToolCallParserStream, ArgumentStreamingAnnouncesFirst) {
  ToolCallStreamParser p(Seeded(1, /*stream_arguments=*/true));
  EXPECT_TRUE(p.Feed("<|tool_call>call:get").tool_calls.empty());
  ToolCallStreamDelta d = p.Feed("_x{city:<|\"|>Par");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].name, "get_x");
  EXPECT_FALSE(d.tool_calls[0].id.empty());
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"city": "Par)");
  d = p.Feed("is<|\"");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_TRUE(d.tool_calls[0].id.empty());
  EXPECT_EQ(d.tool_calls[0].arguments, "is");
  d = p.Feed("|>}<tool_call|>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, "\"}");
  ASSERT_EQ(p.calls().size(), 1u);
  EXPECT_EQ(p.calls()[0].arguments, R"({"city": "Paris"})");
}

// Outputs covering calls, content, near-markers and malformed calls.
std::vector<std::string> StreamCorpus() {
  const std::string good = Call("get_weather", "city:" + kQ + "Zürich, \"CH\"" + kQ +
                                                   ",days:2,obj:{a:[1,1.5e-05,null,true]}");
  return {
      "",
      "plain text with < and | and > and <| and |>",
      good,
      "Let me check. " + good,
      good + good + "\nSummary: {a:1}",
      "x<|tool_cal" + good + "<|tool_call" + good + "<tool_call|>",
      "<|tool_call>call:f{a:1",
      "<|tool_call>bad " + good + " <|tool_call>call:f{a:<|\"|>x<tool_call|> " + good,
      "<|tool_call><|tool_call><|tool_call>call:f{}<tool_call|>",
      "<|tool_call>call:f{s:<|\"|>a<|\"|<|\"|<|\"|>}<tool_call|>",
      "<|tool_call>call:f{ a : [ 1 , 2 ] , b : { } }\n<tool_call|> tail <|",
      "é中😀" + good + "\xff\xfe",
  };
}

void ExpectStreamMatches(const std::string& text, const std::vector<std::string>& pieces) {
  const ToolCallParseResult whole = ParseToolCalls(text, Seeded());
  const test::ToolStreamOutcome streamed = RunToolStream(pieces, Seeded());
  ASSERT_EQ(streamed.content, whole.content) << text;
  ASSERT_EQ(streamed.calls, test::AsStreamed(whole.calls)) << text;
  ASSERT_TRUE(streamed.well_ordered) << text;
  for (const test::StreamedCall& c : streamed.calls) ASSERT_EQ(c.deltas, 1) << text;
  // With argument streaming the content is the same, and so are the calls whenever no announced
  // call turned out malformed (ids included: each call takes one id from the generator).
  const test::ToolStreamOutcome incremental = RunToolStream(pieces, Seeded(7, true));
  ASSERT_TRUE(incremental.well_ordered) << text;
  ASSERT_EQ(incremental.content, whole.content) << text;
  if (incremental.calls.size() == whole.calls.size()) {
    ASSERT_EQ(incremental.calls, test::AsStreamed(whole.calls)) << text;
  }
}

TEST(ToolCallParserStream, EveryTwoWaySplitMatchesOneShot) {
  for (const std::string& text : StreamCorpus()) {
    for (size_t cut = 0; cut <= text.size(); ++cut) ExpectStreamMatches(text, SplitAt(text, {cut}));
    ExpectStreamMatches(text, ByteSplit(text));
  }
}

TEST(ToolCallParserStream, RandomSplitsMatchOneShot) {
  std::mt19937_64 rng(1234);
  for (const std::string& text : StreamCorpus()) {
    for (int i = 0; i < 300; ++i) ExpectStreamMatches(text, RandomSplit(text, rng, 12));
  }
}

TEST(ToolCallParserStream, ArgumentStreamingOfAMalformedCallKeepsContent) {
  // The call is announced, then turns out malformed: its text still reaches content, and the
  // one-shot parser finds no call.
  const std::string text = "<|tool_call>call:f{a:1,b:oops}<tool_call|>";
  const test::ToolStreamOutcome s = RunToolStream(SplitAt(text, {20}), Seeded(7, true));
  EXPECT_EQ(s.content, text);
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0].name, "f");
  EXPECT_TRUE(ParseToolCalls(text).calls.empty());
}

}  // namespace
}  // namespace gs
