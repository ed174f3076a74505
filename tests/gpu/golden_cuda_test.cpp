// The CUDA runner against transformers (float32, dequantized weights) on the golden configs of
// tests/data/golden (layout: tests/golden/golden_util.h), every checkpoint format: per prompt
// position KL(reference ‖ ours) < 1e-3 and the same argmax at ≥ 99% of positions, for prefill
// chunks of 1, 7 and the whole prompt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "golden/golden_util.h"
#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/generate.h"
#include "runtime/sampling.h"
#include "util/npy.h"

namespace gs {
namespace {

struct Case {
  std::string dir, format;
};

// GS_GOLDEN_ROOT overrides the compiled-in tests/data/golden (binaries carried to a GPU machine).
std::vector<std::string> GoldenConfigs() {
  const char* env = std::getenv("GS_GOLDEN_ROOT");
  const std::string root = env != nullptr ? env : golden::GoldenRoot();
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (std::filesystem::exists(e.path() / "reference.json")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const auto& dir : GoldenConfigs()) {
    for (const char* f : {"bf16", "modelopt", "ct"}) cases.push_back({dir, f});
  }
  if (cases.empty()) cases.push_back({"", ""});  // one test that skips loudly
  return cases;
}

class GoldenCuda : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenCuda, KlAndArgmaxMatchTransformers) {
  const Case& c = GetParam();
  if (c.dir.empty()) GTEST_SKIP() << "\n*** NO GOLDEN DATA in " << golden::GoldenRoot() << " ***";
  GS_REQUIRE_GPU();
  const auto ref = golden::ReadReference(c.dir);
  if (!ref["formats"].contains(c.format)) GTEST_SKIP() << "no " << c.format << " data";
  const auto& fmt = ref["formats"][c.format];
  const std::string model_dir = c.dir + "/" + c.format;
  auto config = LoadModelConfig(model_dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, model_dir);
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  auto runner = CreateCudaRunner(*config, *weights, KvSpecForSingleSequence(1024, 4));
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  const int vocab = config->vocab_size;
  const auto& prompts = ref["prompts"];
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<int32_t> prompt = prompts[p].get<std::vector<int32_t>>();
    auto expected = ReadNpyFloat32(c.dir + "/" + fmt["logits"][p].get<std::string>());
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    for (int chunk : {0, 1, 7}) {
      GenerateOptions opts;
      opts.max_tokens = 0;
      opts.prefill_chunk = chunk;
      opts.prompt_logits = true;
      auto got = Generate(**runner, prompt, opts);
      ASSERT_TRUE(got.ok()) << got.error().message;
      ASSERT_EQ(got->prompt_logits.size(), expected->data.size());
      double worst = 0;
      size_t same = 0;
      for (size_t t = 0; t < prompt.size(); ++t) {
        const float* r = &expected->data[t * vocab];
        const float* o = &got->prompt_logits[t * vocab];
        const double kl = gputest::KlDivergence(r, o, vocab);
        if (!(kl <= worst)) worst = kl;
        same += Argmax({r, static_cast<size_t>(vocab)}) == Argmax({o, static_cast<size_t>(vocab)});
      }
      EXPECT_LT(worst, 1e-3) << c.format << " prompt " << p << " chunk " << chunk;
      EXPECT_GE(static_cast<double>(same) / prompt.size(), 0.99)
          << c.format << " prompt " << p << " chunk " << chunk;
      RecordProperty(StrCat(c.format, "_p", p, "_c", chunk, "_kl"), std::to_string(worst));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, GoldenCuda, ::testing::ValuesIn(AllCases()),
                         [](const auto& info) {
                           if (info.param.dir.empty()) return std::string("NoGoldenData");
                           std::string name = std::filesystem::path(info.param.dir).filename().string() +
                                              "_" + info.param.format;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace gs
