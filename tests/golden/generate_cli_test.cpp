// `gemmaserve generate` end to end against the transformers golden data: --dump-logits writes
// the prompt's logits as .npy (equal whatever --prefill-chunk), stdout has the greedy ids.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "golden/golden_util.h"
#include "util/npy.h"
#include "util/str.h"

namespace gs {
namespace {

std::string RunCommand(const std::string& cmd, int* status) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  *status = pclose(pipe);
  return out;
}

std::string Csv(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

TEST(GenerateCli, DumpLogitsAndGreedyIdsMatchGolden) {
  const auto configs = golden::GoldenConfigs();
  if (configs.empty()) GTEST_SKIP() << "no golden data in tests/data/golden";
  const std::string dir = configs.front();
  const auto ref = golden::ReadReference(dir);
  const std::vector<int> prompt = ref["prompts"][0].get<std::vector<int>>();
  const int max_new = ref["max_new_tokens"].get<int>();
  const auto tmp = std::filesystem::temp_directory_path() / ("gs_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  for (const char* format : {"modelopt", "ct"}) {
    const auto& fmt = ref["formats"][format];
    auto expected = ReadNpyFloat32(dir + "/" + fmt["logits"][0].get<std::string>());
    ASSERT_TRUE(expected.ok());
    std::vector<float> first;
    for (int chunk : {0, 1, 7}) {
      const std::string npy = (tmp / StrCat("logits_", chunk, ".npy")).string();
      const std::string cmd = std::string(GS_BINARY) + " generate --model " + dir + "/" + format +
                              " --prompt-ids " + Csv(prompt) + " --max-tokens " +
                              std::to_string(max_new) + " --temperature 0 --ignore-eos" +
                              " --prefill-chunk " + std::to_string(chunk) + " --dump-logits " + npy +
                              " 2>/dev/null";
      int status = -1;
      const std::string out = RunCommand(cmd, &status);
      ASSERT_EQ(status, 0) << cmd;
      EXPECT_EQ(out, Csv(fmt["greedy"][0].get<std::vector<int>>()) + "\n") << format << " chunk " << chunk;
      auto got = ReadNpyFloat32(npy);
      ASSERT_TRUE(got.ok()) << got.error().message;
      ASSERT_EQ(got->shape, expected->shape);
      const int64_t vocab = got->shape[1];
      for (int64_t t = 0; t < got->shape[0]; ++t) {
        EXPECT_LE(golden::RelativeL2(&got->data[t * vocab], &expected->data[t * vocab], vocab), 1e-3)
            << format << " position " << t;
      }
      if (chunk == 0) first = got->data;
      else EXPECT_EQ(got->data, first) << "--prefill-chunk " << chunk << " changed the logits";
    }
  }
  // --max-tokens 0 only scores the prompt.
  int status = -1;
  const std::string out = RunCommand(std::string(GS_BINARY) + " generate --model " + dir +
                                         "/bf16 --max-tokens 0 --prompt-ids " + Csv(prompt) + " 2>/dev/null",
                                     &status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(out, "\n");
  std::filesystem::remove_all(tmp);
}

TEST(GenerateCli, BadArgumentsGiveClearErrors) {
  int status = -1;
  std::string out = RunCommand(std::string(GS_BINARY) + " generate --model /nonexistent --prompt-ids 2 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("/nonexistent"), std::string::npos) << out;
  out = RunCommand(std::string(GS_BINARY) + " generate --model /tmp --prompt-ids 2,x 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("'x' is not a token id"), std::string::npos) << out;
  out = RunCommand(std::string(GS_BINARY) + " nonsense 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("unknown command"), std::string::npos) << out;
}

}  // namespace
}  // namespace gs
