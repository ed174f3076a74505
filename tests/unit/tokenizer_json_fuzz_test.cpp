// tokenizer.json loading under hostile input: every unsupported component or option is rejected
// with an error naming it, and truncated, byte-mutated and structurally mutated files give errors
// (or load), never crashes, hangs or out-of-bounds reads (this test also runs under ASan/UBSan).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "unit/tokenizer_fixture.h"

namespace gs {
namespace {

using nlohmann::json;

// Loads `text`; if it loads, exercises encode/decode a little.
void LoadAndUse(const std::string& text) {
  auto tok = Tokenizer::FromJson(text, "fuzz.json");
  if (!tok.ok()) {
    EXPECT_FALSE(tok.error().message.empty());
    EXPECT_NE(tok.error().message.find("fuzz.json"), std::string::npos) << tok.error().message;
    return;
  }
  for (const char* s : {"", "the abc", "a\n\nb <bos> \xff\xfe", "\U0001F999 \u00e9\u2581"}) {
    const std::vector<int32_t> ids = tok->Encode(s, true);
    (void)tok->Decode(ids, false);
    (void)tok->Decode(ids, true);
  }
  (void)tok->Decode(std::vector<int32_t>{-1, 0, 1, 2, 5, 300, 1 << 30}, false);
}

std::string ErrorOf(const json& j) {
  auto tok = Tokenizer::FromJson(j.dump(), "tokenizer.json");
  EXPECT_FALSE(tok.ok()) << j.dump().substr(0, 200);
  return tok.ok() ? std::string() : tok.error().message;
}

TEST(TokenizerJson, FixtureLoads) {
  auto tok = Tokenizer::FromJson(testing::SmallTokenizerJson().dump(), "fixture.json");
  ASSERT_TRUE(tok.ok()) << tok.error().message;
}

TEST(TokenizerJson, UnsupportedComponentsAreRejectedByName) {
  const json base = testing::SmallTokenizerJson();
  struct Case {
    const char* field;
    json value;
    const char* expect;  // must appear in the error
  };
  const json regex_pattern = {{"Regex", "\\s+"}};
  const std::vector<Case> cases = {
      {"normalizer", {{"type", "NFKC"}}, "normalizer type 'NFKC' is not supported"},
      {"normalizer", {{"type", "NFC"}}, "'NFC'"},
      {"normalizer", {{"type", "Lowercase"}}, "'Lowercase'"},
      {"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", ""}}, "'Precompiled'"},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFD"}}}}}, "'NFD'"},
      {"normalizer", {{"type", "Replace"}, {"pattern", regex_pattern}, {"content", " "}}, "Regex"},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", ""}}}, {"content", "x"}},
       "empty pattern"},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "x"},
                      {"extra", 1}}, "option 'extra'"},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "_"}}, "'Metaspace'"},
      {"pre_tokenizer", {{"type", "ByteLevel"}}, "'ByteLevel'"},
      {"pre_tokenizer", {{"type", "Whitespace"}}, "'Whitespace'"},
      {"pre_tokenizer", {{"type", "Split"}, {"pattern", regex_pattern}, {"behavior", "Isolated"},
                         {"invert", false}}, "Regex"},
      {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}},
                         {"behavior", "Sideways"}, {"invert", false}}, "Sideways"},
      {"decoder", {{"type", "Metaspace"}}, "decoder type 'Metaspace'"},
      {"decoder", {{"type", "ByteLevel"}}, "'ByteLevel'"},
      {"decoder", {{"type", "WordPiece"}}, "'WordPiece'"},
      {"decoder", {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}}, "content"},
      {"post_processor", {{"type", "ByteLevel"}}, "post_processor type 'ByteLevel'"},
      {"post_processor", {{"type", "BertProcessing"}}, "'BertProcessing'"},
      {"post_processor", {{"type", "Sequence"}, {"processors", json::array()}}, "'Sequence'"},
      {"truncation", {{"max_length", 8}}, "truncation is not supported"},
      {"padding", {{"strategy", "BatchLongest"}}, "padding is not supported"},
      {"version", "2.0", "version \"2.0\" is not supported"},
  };
  for (const Case& c : cases) {
    json j = base;
    j[c.field] = c.value;
    const std::string error = ErrorOf(j);
    EXPECT_NE(error.find(c.expect), std::string::npos) << "error: " << error;
    EXPECT_NE(error.find("tokenizer.json"), std::string::npos) << error;
  }
  const std::vector<std::pair<std::pair<const char*, json>, const char*>> model_cases = {
      {{"type", "Unigram"}, "model type 'Unigram' is not supported"},
      {{"type", "WordPiece"}, "'WordPiece'"},
      {{"dropout", 0.1}, "'dropout'"},
      {{"continuing_subword_prefix", "##"}, "'continuing_subword_prefix'"},
      {{"end_of_word_suffix", "</w>"}, "'end_of_word_suffix'"},
      {{"unk_token", "<nope>"}, "unk_token"},
      {{"new_option", true}, "'new_option'"},
  };
  for (const auto& [kv, expect] : model_cases) {
    json j = base;
    j["model"][kv.first] = kv.second;
    const std::string error = ErrorOf(j);
    EXPECT_NE(error.find(expect), std::string::npos) << "error: " << error;
  }
  json j = base;
  j["added_tokens"][0]["weird"] = true;
  EXPECT_NE(ErrorOf(j).find("'weird'"), std::string::npos);
  j = base;
  j["model"]["merges"].push_back(json::array({"a", "zz"}));
  EXPECT_NE(ErrorOf(j).find("\"zz\" is not in the vocabulary"), std::string::npos);
  j = base;
  j["model"]["merges"] = json::array({"a b c"});
  EXPECT_NE(ErrorOf(j).find("exactly one space"), std::string::npos);
  j = base;
  j["model"]["merges"] = json::array({"a b", json::array({"h", "e"})});
  EXPECT_NE(ErrorOf(j).find("mix"), std::string::npos);
  j = base;
  j["model"]["vocab"]["zzz"] = 4294967295;
  EXPECT_NE(ErrorOf(j).find("out of range"), std::string::npos);
  j = base;
  j["model"]["vocab"]["zzz"] = 0;
  EXPECT_NE(ErrorOf(j).find("id 0 is used by"), std::string::npos);
  j = base;
  j.erase("model");
  EXPECT_NE(ErrorOf(j).find("missing field 'model'"), std::string::npos);
}

TEST(TokenizerJson, LegacyMergesFormLoadsAndMatchesPairs) {
  json pairs = testing::SmallTokenizerJson();
  json legacy = pairs;
  json strings = json::array({"#version: 0.2"});
  for (const json& m : pairs["model"]["merges"]) {
    strings.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  legacy["model"]["merges"] = strings;
  auto a = Tokenizer::FromJson(pairs.dump(), "pairs.json");
  auto b = Tokenizer::FromJson(legacy.dump(), "legacy.json");
  ASSERT_TRUE(a.ok() && b.ok());
  for (const char* s : {"the abc\n\nthe", "ab c  the"}) EXPECT_EQ(a->Encode(s, true), b->Encode(s, true));
}

TEST(TokenizerJson, TruncationsAreErrors) {
  const std::string text = testing::SmallTokenizerJson().dump();
  // Every prefix up to 400 bytes, then every 7th (each is a full load attempt; ASan-friendly).
  for (size_t n = 0; n < text.size(); n += n < 400 ? 1 : 7) {
    auto tok = Tokenizer::FromJson(text.substr(0, n), "fuzz.json");
    ASSERT_FALSE(tok.ok()) << "prefix of " << n << " bytes loaded";
  }
}

TEST(TokenizerJson, ByteMutationsNeverCrash) {
  const std::string text = testing::SmallTokenizerJson().dump(1);
  std::mt19937 rng(42);
  static const char kInteresting[] = "{}[]\",:\\0123456789-.eEtrufalsn \x80\xff\xc3\xed";
  for (int iter = 0; iter < 1000; ++iter) {
    std::string m = text;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const size_t pos = rng() % m.size();
      const char c = kInteresting[rng() % (sizeof(kInteresting) - 1)];
      switch (rng() % 4) {
        case 0: m[pos] = c; break;
        case 1: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), c); break;
        case 2: m.erase(pos, 1 + rng() % 8); break;
        default: m.insert(pos, m.substr(rng() % m.size(), rng() % 32)); break;
      }
    }
    LoadAndUse(m);
  }
}

// Replaces a random value somewhere in the document with a value of another type.
void MutateStructure(json* node, std::mt19937& rng, int depth) {
  static const std::vector<json> kValues = {
      nullptr, true, false, 0, -1, 4294967296.0, 1e300, "", "x", "<0xZZ>", json::array(),
      json::object(), json::array({1, "a", nullptr}), json::object({{"type", "Sequence"}})};
  const bool descend = (node->is_object() || node->is_array()) && !node->empty() && rng() % 4 != 0;
  if (!descend || depth > 12) {
    *node = kValues[rng() % kValues.size()];
    return;
  }
  auto it = node->begin();
  std::advance(it, static_cast<std::ptrdiff_t>(rng() % node->size()));
  MutateStructure(&*it, rng, depth + 1);
}

TEST(TokenizerJson, StructuralMutationsNeverCrash) {
  const json base = testing::SmallTokenizerJson();
  std::mt19937 rng(7);
  for (int iter = 0; iter < 700; ++iter) {
    json j = base;
    for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) MutateStructure(&j, rng, 0);
    LoadAndUse(j.dump());
  }
}

TEST(TokenizerJson, DeepNestingAndHugeInputsAreErrors) {
  std::string deep = "{\"normalizer\": ";
  for (int i = 0; i < 100000; ++i) deep += '[';
  auto tok = Tokenizer::FromJson(deep, "deep.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.error().message.find("nested too deeply"), std::string::npos)
      << tok.error().message;
  EXPECT_FALSE(Tokenizer::FromJson("", "empty.json").ok());
  EXPECT_FALSE(Tokenizer::FromJson("null", "null.json").ok());
  EXPECT_FALSE(Tokenizer::FromJson("{\"model\": {\"type\": \"BPE\"}}", "x.json").ok());
  EXPECT_FALSE(Tokenizer::FromJson("{\"a\": \"\xff\"}", "bad_utf8.json").ok());
  EXPECT_FALSE(Tokenizer::Load("/nonexistent/tokenizer.json").ok());
}

}  // namespace
}  // namespace gs
