// `gemmaserve quantize` on the BF16 golden checkpoints: codes and block scales equal the ModelOpt
// golden, which the golden script produced with its own torch implementation of the recipe; the
// quantized model's logits match transformers on those weights; bad inputs are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "golden/golden_util.h"
#include "model/config.h"
#include "model/quant_config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "tools/quantize.h"
#include "util/npy.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

class QuantizeGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    out_ = fs::temp_directory_path() / ("gs_quantize_" + std::to_string(::getpid()));
    fs::remove_all(out_);
  }
  void TearDown() override { fs::remove_all(out_); }
  fs::path out_;
};

TEST_P(QuantizeGolden, EqualsModeloptRecipeAndTransformers) {
  const std::string dir = GetParam();
  QuantizeOptions o;
  o.from = dir + "/bf16";
  o.to = out_.string();
  auto st = QuantizeBf16ToNvfp4(o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto ours = TensorStore::OpenDirectory(out_.string());
  auto golden = TensorStore::OpenDirectory(dir + "/modelopt");
  ASSERT_TRUE(ours.ok() && golden.ok());
  int compared = 0;
  for (const auto& [name, view] : golden->all()) {
    if (name.ends_with(".input_scale")) {
      EXPECT_EQ(ours->Find(name), nullptr) << "weight-only output has no input_scale: " << name;
      continue;
    }
    const TensorView* mine = ours->Find(name);
    ASSERT_NE(mine, nullptr) << name;
    ASSERT_EQ(mine->dtype, view->dtype) << name;
    ASSERT_EQ(mine->shape, view->shape) << name;
    EXPECT_EQ(std::memcmp(mine->data, view->data, view->nbytes), 0) << name << " differs";
    ++compared;
  }
  EXPECT_EQ(compared + 0u, ours->all().size()) << "extra tensors in the output";
  auto config = LoadModelConfig(out_.string());
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, out_.string());
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  CpuRunner runner(*config, std::move(*weights), KvSpecForSingleSequence(256), CpuRunnerOptions{2, 0});
  const auto ref = golden::ReadReference(dir);
  const auto prompt = ref["prompts"][0].get<std::vector<int32_t>>();
  auto expected = ReadNpyFloat32(dir + "/" + ref["formats"]["modelopt"]["logits"][0].get<std::string>());
  ASSERT_TRUE(expected.ok());
  GenerateOptions g;
  g.max_tokens = 0;
  g.prompt_logits = true;
  auto got = Generate(runner, prompt, g);
  ASSERT_TRUE(got.ok());
  double worst = 0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    worst = std::max(worst, golden::RelativeL2(&got->prompt_logits[t * config->vocab_size],
                                               &expected->data[t * config->vocab_size], config->vocab_size));
  }
  std::printf("  %s: %d tensors bit-exact, logits vs transformers worst relative L2 %.2e\n",
              fs::path(dir).filename().c_str(), compared, worst);
  EXPECT_LE(worst, 1e-3);
}

// --calib: input_scale = amax/(6·448) of each linear's input over the calibration prompts, every
// expert seeing every token — the golden script measured the same with transformers' hooks.
TEST_P(QuantizeGolden, CalibratedInputScalesMatchTransformersHooks) {
  const std::string dir = GetParam();
  const auto ref = golden::ReadReference(dir);
  const fs::path calib = out_.string() + "_calib.jsonl";
  {
    std::ofstream f(calib);
    for (const auto& p : ref["prompts"]) f << p.dump() << "\n";
  }
  QuantizeOptions o;
  o.from = dir + "/bf16";
  o.to = out_.string();
  o.calib_file = calib.string();
  auto st = QuantizeBf16ToNvfp4(o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto ours = TensorStore::OpenDirectory(out_.string());
  auto golden = TensorStore::OpenDirectory(dir + "/modelopt");
  ASSERT_TRUE(ours.ok() && golden.ok());
  int compared = 0;
  double worst = 0;
  for (const auto& [name, view] : golden->all()) {
    if (!name.ends_with(".input_scale")) continue;
    const TensorView* mine = ours->Find(name);
    ASSERT_NE(mine, nullptr) << name;
    float a, b;
    std::memcpy(&a, mine->data, 4);
    std::memcpy(&b, view->data, 4);
    worst = std::max(worst, std::fabs(static_cast<double>(a) - b) / b);
    ++compared;
  }
  std::printf("  %s: %d input scales, worst relative difference %.2e\n", fs::path(dir).filename().c_str(),
              compared, worst);
  EXPECT_GT(compared, 0);
  EXPECT_LE(worst, 1e-4);
  auto q = LoadQuantizationInfo(out_.string());
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->quant_algo, "NVFP4");
  fs::remove(calib);
}

TEST(QuantizeBadInput, CalibrationFileErrorsNameTheLine) {
  const auto configs = golden::GoldenConfigs();
  ASSERT_FALSE(configs.empty());
  const fs::path dir = fs::temp_directory_path() / ("gs_quantize_calib_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "c.jsonl") << "[2, 3, 4]\n{\"x\": 1}\n";
  std::ofstream(dir / "c.txt") << "plain text needs a tokenizer\n";
  QuantizeOptions o;
  o.from = configs.front() + "/bf16";
  o.to = (dir / "out").string();
  o.calib_file = (dir / "c.jsonl").string();
  auto st = QuantizeBf16ToNvfp4(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("c.jsonl line 2"), std::string::npos) << st.error().message;
  o.calib_file = (dir / "c.txt").string();
  st = QuantizeBf16ToNvfp4(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("tokenizer.json"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(dir / "out"));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Golden, QuantizeGolden, ::testing::ValuesIn(golden::GoldenConfigs()),
                         [](const auto& info) { return fs::path(info.param).filename().string(); });

TEST(QuantizeBadInput, RefusesQuantizedInputAndExistingOutput) {
  const auto configs = golden::GoldenConfigs();
  ASSERT_FALSE(configs.empty());
  const fs::path out = fs::temp_directory_path() / ("gs_quantize_bad_" + std::to_string(::getpid()));
  fs::remove_all(out);
  QuantizeOptions o;
  o.from = configs.front() + "/modelopt";
  o.to = out.string();
  auto st = QuantizeBf16ToNvfp4(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("already quantized"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(out));
  fs::create_directories(out);
  o.from = configs.front() + "/bf16";
  st = QuantizeBf16ToNvfp4(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("already exists"), std::string::npos) << st.error().message;
  fs::remove_all(out);
}

}  // namespace
}  // namespace gs
