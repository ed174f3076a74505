// `gemmaserve generate --image` end to end against the transformers golden data of
// tests/data/golden_vision: the image placeholder in --prompt-ids expands to the image's tokens,
// the greedy ids and the prompt logits match transformers; without a placeholder the image is
// appended; bad image arguments fail with a message.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "golden/golden_util.h"
#include "golden/vision_golden_util.h"
#include "util/npy.h"

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

// The golden prompt with each image's boi + n × image + eoi collapsed to one placeholder.
std::vector<int> Collapse(const std::vector<int>& ids, int boi, int image, int eoi) {
  std::vector<int> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == boi || ids[i] == eoi) continue;
    if (ids[i] == image && i > 0 && ids[i - 1] == image) continue;
    out.push_back(ids[i]);
  }
  return out;
}

TEST(GenerateImageCli, PlaceholderExpansionMatchesTransformers) {
  const std::string root = golden::VisionRoot();
  const auto ref = golden::ReadJsonFile(root + "/model/reference.json");
  const int boi = ref["boi_token_id"], image = ref["image_token_id"], eoi = ref["eoi_token_id"];
  const int vocab = 512;
  const std::string npy = (std::filesystem::temp_directory_path() /
                           ("gs_image_cli_" + std::to_string(::getpid()) + ".npy")).string();
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    const auto& pr = ref["prompts"][p];
    const std::vector<int> ids = pr["ids"].get<std::vector<int>>();
    std::string images;
    for (const auto& f : pr["images"]) images += " --image " + root + "/images/" + f.get<std::string>();
    const std::string cmd = std::string(GS_BINARY) + " generate --model " + root + "/model/bf16" +
                            " --prompt-ids " + Csv(Collapse(ids, boi, image, eoi)) + images +
                            " --max-soft-tokens 70 --max-tokens " +
                            std::to_string(pr["greedy"].size()) +
                            " --temperature 0 --ignore-eos --threads 2 --dump-logits " + npy +
                            " 2>/dev/null";
    int status = -1;
    const std::string out = RunCommand(cmd, &status);
    ASSERT_EQ(status, 0) << cmd;
    EXPECT_EQ(out, Csv(pr["greedy"].get<std::vector<int>>()) + "\n") << "prompt " << p;
    auto got = ReadNpyFloat32(npy);
    auto want = ReadNpyFloat32(root + "/model/" + pr["logits"].get<std::string>());
    ASSERT_TRUE(got.ok() && want.ok());
    ASSERT_EQ(got->shape, want->shape) << "expanded prompt length";
    double worst = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      worst = std::max(worst, golden::RelativeL2(&got->data[t * vocab], &want->data[t * vocab], vocab));
    }
    EXPECT_LE(worst, 1e-3);
  }
  std::filesystem::remove(npy);
}

TEST(GenerateImageCli, AppendsWithoutPlaceholderAndReportsErrors) {
  const std::string root = golden::VisionRoot();
  const std::string base = std::string(GS_BINARY) + " generate --model " + root +
                           "/model/bf16 --max-tokens 1 --temperature 0 --threads 2";
  int status = -1;
  // No placeholder: the image goes at the end: 2 text + boi + 63 + eoi = 67 prompt tokens.
  std::string out = RunCommand(base + " --prompt-ids 2,17 --image " + root +
                               "/images/rgb_640x480.png --max-soft-tokens 70 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("67 prompt tokens"), std::string::npos) << out;
  out = RunCommand(base + " --prompt-ids 2,501,501 --image " + root + "/images/rgb_50x30.png 2>&1",
                   &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("2 image placeholders"), std::string::npos) << out;
  out = RunCommand(base + " --prompt-ids 2 --image " + root + "/preprocess.json 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("unsupported"), std::string::npos) << out;
  out = RunCommand(base + " --prompt-ids 2 --max-soft-tokens 100 --image " + root +
                   "/images/rgb_50x30.png 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("max_soft_tokens"), std::string::npos) << out;
}

}  // namespace
}  // namespace gs
