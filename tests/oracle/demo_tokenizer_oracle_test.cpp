// The demo model's tokenizer.json (make-demo-model) tokenizes exactly as the HF tokenizers
// library does, and the Gemma 4 control tokens keep their Gemma ids.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "tools/demo_tokenizer.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

TEST(DemoTokenizer, MatchesHfTokenizers) {
  const fs::path dir = fs::temp_directory_path() / ("gs_demo_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << DemoTokenizerJson(1024).dump();
  const std::vector<std::string> strings = {
      "Hello world!", "  two  spaces\nnew line\n\n", "<|turn>user\nHi there<turn|>\n<|turn>model\n",
      "caf\xc3\xa9 \xe2\x82\xac 100 \xf0\x9f\x98\x80", "<|tool_call>call:f{a:<|\"|>x<|\"|>}<tool_call|>",
      "<bos><eos><pad> tabs\tand ~symbols~", "hello the world: answer the question about memory", ""};
  {
    std::ofstream s(dir / "strings.jsonl");
    for (const auto& x : strings) s << nlohmann::json(x).dump() << "\n";
  }
  nlohmann::json jobs = nlohmann::json::array();
  jobs.push_back({{"tokenizer", (dir / "tokenizer.json").string()}, {"strings", (dir / "strings.jsonl").string()},
                  {"id_lists", nullptr}, {"out", (dir / "out.jsonl").string()}});
  std::ofstream(dir / "jobs.json") << jobs.dump();
  const std::string cmd = "node '" + std::string(GS_SOURCE_DIR) + "/tests/oracle/tokenizer_oracle.js' '" +
                          (dir / "jobs.json").string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << " (make test installs tests/oracle/node_modules)";
  auto tok = Tokenizer::Load((dir / "tokenizer.json").string());
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  std::ifstream out(dir / "out.jsonl");
  std::string line;
  size_t i = 0;
  for (; std::getline(out, line) && i < strings.size(); ++i) {
    const auto ref = nlohmann::json::parse(line);
    EXPECT_EQ(tok->Encode(strings[i], false), ref["ids"].get<std::vector<int32_t>>()) << strings[i];
    EXPECT_EQ(tok->Encode(strings[i], true), ref["ids_special"].get<std::vector<int32_t>>()) << strings[i];
    EXPECT_EQ(tok->Decode(tok->Encode(strings[i], false)), ref["decoded"].get<std::string>()) << strings[i];
  }
  EXPECT_EQ(i, strings.size());
  EXPECT_EQ(tok->TokenToId("<|turn>"), 105);
  EXPECT_EQ(tok->TokenToId("<turn|>"), 106);
  EXPECT_EQ(tok->TokenToId("<|tool_response>"), 50);
  EXPECT_EQ(tok->TokenToId("<bos>"), 2);
  EXPECT_LE(tok->vocab_size(), 1024u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gs
