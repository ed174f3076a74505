// The stand-in tokenizer `serve --load-format dummy` writes for a config without a tokenizer
// (make-demo-model's character-level tokenizer at the config's vocabulary size): it covers all
// 262144 ids of gemma-4-26B-A4B-it, keeps Gemma 4's special-token ids (reference
// tokenizer-template-api.md §1: <bos> 2, <|turn> 105, <turn|> 106, <|tool_call> 48), and encodes
// any text (bench-serve's random prompts go through /tokenize) to ids inside the vocabulary that
// decode back to the text.
#include <gtest/gtest.h>

#include "model/config.h"
#include "tokenizer/tokenizer.h"
#include "tools/demo_tokenizer.h"

namespace gs {
namespace {

TEST(DummyTokenizer, CoversTheRealVocabulary) {
  auto config = LoadModelConfig(std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it");
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_EQ(config->vocab_size, 262144);
  auto tok = Tokenizer::FromJson(DemoTokenizerJson(config->vocab_size).dump(), "stand-in");
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  EXPECT_EQ(tok->vocab_size(), 262144u);
  EXPECT_EQ(tok->TokenToId("<bos>"), 2);
  EXPECT_EQ(tok->TokenToId("<|turn>"), 105);
  EXPECT_EQ(tok->TokenToId("<turn|>"), 106);
  EXPECT_EQ(tok->TokenToId("<|tool_call>"), 48);
  const std::string text = "Random words: the model, a kernel; 42 tokens {x} \xC3\xA9t\xC3\xA9 \xE2\x9C\x93";
  const std::vector<int32_t> ids = tok->Encode(text, true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 2);
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, config->vocab_size);
  }
  EXPECT_EQ(tok->Decode(ids, true), text);
}

}  // namespace
}  // namespace gs
