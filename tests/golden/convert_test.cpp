// `gemmaserve convert` on the compressed-tensors golden checkpoints: non-attention tensors equal
// the ModelOpt golden (the global scales after 1/x), attention equals the dequantized values
// rounded to BF16, the converted model's logits match transformers on the compressed-tensors
// weights; bad inputs are refused before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>

#include "golden/golden_util.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "tools/convert.h"
#include "util/mapped_file.h"
#include "util/npy.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

float F32(const TensorView& v) {
  float x;
  std::memcpy(&x, v.data, 4);
  return x;
}

// Independent float64 dequantization of one compressed-tensors linear, rounded to bf16.
std::vector<uint16_t> ReferenceDequant(const TensorStore& ct, const std::string& module) {
  const TensorView* codes = ct.Find(module + ".weight_packed");
  const TensorView* scales = ct.Find(module + ".weight_scale");
  const double divisor = F32(*ct.Find(module + ".weight_global_scale"));
  const int64_t rows = codes->shape[0], cols = codes->shape[1] * 2;
  static const double kE2m1[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  std::vector<uint16_t> out(static_cast<size_t>(rows * cols));
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t k = 0; k < cols; ++k) {
      const uint8_t byte = codes->data[n * cols / 2 + k / 2];
      const uint8_t code = k % 2 ? byte >> 4 : byte & 0xf;
      const double v = (code & 8 ? -1 : 1) * kE2m1[code & 7] *
                       static_cast<double>(E4m3ToFloat(scales->data[n * cols / 16 + k / 16])) / divisor;
      out[static_cast<size_t>(n * cols + k)] = FloatToBf16(static_cast<float>(v));
    }
  }
  return out;
}

class ConvertGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    out_ = fs::temp_directory_path() / ("gs_convert_" + std::to_string(::getpid()));
    fs::remove_all(out_);
  }
  void TearDown() override { fs::remove_all(out_); }
  fs::path out_;
};

TEST_P(ConvertGolden, MatchesModeloptGoldenAndTransformers) {
  const std::string dir = GetParam();
  ConvertOptions o{dir + "/ct", out_.string(), false, 300'000};  // small shards: exercise the index
  auto st = ConvertCompressedTensorsToModelopt(o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto conv = TensorStore::OpenDirectory(out_.string());
  auto mo = TensorStore::OpenDirectory(dir + "/modelopt");
  auto ct = TensorStore::OpenDirectory(dir + "/ct");
  ASSERT_TRUE(conv.ok() && mo.ok() && ct.ok());
  const std::regex attention(R"(.*\.self_attn\.(q|k|v|o)_proj\.weight$)");
  int exact_scales = 0, scales = 0, attention_tensors = 0;
  for (const auto& [name, view] : conv->all()) {
    if (std::regex_match(name, attention)) {
      ++attention_tensors;
      const auto want = ReferenceDequant(*ct, name.substr(0, name.size() - 7));
      ASSERT_EQ(view->dtype, DType::kBF16) << name;
      ASSERT_EQ(view->nbytes, want.size() * 2) << name;
      EXPECT_EQ(std::memcmp(view->data, want.data(), view->nbytes), 0) << name;
      continue;
    }
    const TensorView* golden = mo->Find(name);
    ASSERT_NE(golden, nullptr) << name << " is not in the ModelOpt golden";
    ASSERT_EQ(golden->dtype, view->dtype) << name;
    ASSERT_EQ(golden->numel(), view->numel()) << name;
    if (name.ends_with("weight_scale_2") || name.ends_with("input_scale")) {
      // 1/(1/x) in fp32 is x or its neighbour.
      const float a = F32(*view), b = F32(*golden);
      EXPECT_LE(std::fabs(a - b), std::fabs(b) * 1.2e-7f) << name;
      exact_scales += a == b;
      ++scales;
      continue;
    }
    EXPECT_EQ(std::memcmp(view->data, golden->data, view->nbytes), 0) << name << " differs";
  }
  EXPECT_GT(attention_tensors, 0);
  std::printf("  %s: %d/%d global scales bit-exact after 1/x, %d attention tensors dequantized\n",
              fs::path(dir).filename().c_str(), exact_scales, scales, attention_tensors);
  // Every ModelOpt golden tensor (its attention is BF16 too) exists in the output.
  for (const auto& [name, view] : mo->all()) EXPECT_NE(conv->Find(name), nullptr) << name;
  EXPECT_TRUE(fs::exists(out_ / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(out_ / "generation_config.json"));
  EXPECT_FALSE(fs::exists(out_.string() + ".partial"));

  // The converted checkpoint runs and matches transformers on the compressed-tensors weights.
  auto config = LoadModelConfig(out_.string());
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, out_.string());
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  EXPECT_EQ(weights->quant.method, QuantMethod::kModelopt);
  CpuRunner runner(*config, std::move(*weights), KvSpecForSingleSequence(256), CpuRunnerOptions{2, 0});
  // transformers on the compressed-tensors weights with attention rounded to bf16, which is
  // what the conversion writes (reference.json: ct_converted_variant).
  const auto ref = golden::ReadReference(dir);
  const int vocab = config->vocab_size;
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    const auto prompt = ref["prompts"][p].get<std::vector<int32_t>>();
    auto expected = ReadNpyFloat32(dir + "/" + ref["ct_converted_variant"]["logits"][p].get<std::string>());
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    GenerateOptions g;
    g.max_tokens = 0;
    g.prompt_logits = true;
    auto got = Generate(runner, prompt, g);
    ASSERT_TRUE(got.ok());
    double worst = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
      worst = std::max(worst, golden::RelativeL2(&got->prompt_logits[t * vocab], &expected->data[t * vocab], vocab));
    }
    std::printf("  converted %s prompt %zu vs transformers: worst relative L2 %.2e\n",
                fs::path(dir).filename().c_str(), p, worst);
    EXPECT_LE(worst, 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, ConvertGolden, ::testing::ValuesIn(golden::GoldenConfigs()),
                         [](const auto& info) { return fs::path(info.param).filename().string(); });

TEST(ConvertBadInput, RefusesModeloptInputAndExistingOutput) {
  const auto configs = golden::GoldenConfigs();
  ASSERT_FALSE(configs.empty());
  const std::string dir = configs.front();
  const fs::path out = fs::temp_directory_path() / ("gs_convert_bad_" + std::to_string(::getpid()));
  fs::remove_all(out);

  auto st = ConvertCompressedTensorsToModelopt({dir + "/modelopt", out.string(), false, 1u << 30});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("not compressed-tensors"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(out));

  fs::create_directories(out);
  st = ConvertCompressedTensorsToModelopt({dir + "/ct", out.string(), false, 1u << 30});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("already exists"), std::string::npos) << st.error().message;
  fs::remove_all(out);
}

fs::path broken_dir(const fs::path& out) { return out.string() + "_in"; }

// A copy of the first golden ct checkpoint with `edit` applied to its tensors; convert must fail
// naming `expected` and write nothing.
void ExpectConvertRefuses(const std::function<void(std::vector<TensorToWrite>&)>& edit,
                          const std::string& expected) {
  const std::string dir = golden::GoldenConfigs().front();
  const fs::path out = fs::temp_directory_path() / ("gs_convert_bad_" + std::to_string(::getpid()));
  const fs::path broken = broken_dir(out);
  fs::remove_all(out);
  fs::remove_all(broken);
  fs::create_directories(broken);
  for (const auto& e : fs::directory_iterator(dir + "/ct")) fs::copy_file(e.path(), broken / e.path().filename());
  std::vector<TensorToWrite> tensors;
  {
    auto store = TensorStore::OpenDirectory(broken.string());
    ASSERT_TRUE(store.ok());
    for (const auto& [name, view] : store->all()) {
      tensors.push_back({name, view->dtype, view->shape, std::vector<uint8_t>(view->data, view->data + view->nbytes)});
    }
  }
  edit(tensors);
  ASSERT_TRUE(WriteSafetensors((broken / "model.safetensors").string(), tensors).ok());
  auto st = ConvertCompressedTensorsToModelopt({broken.string(), out.string(), false, 1u << 30});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(expected), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));
  fs::remove_all(broken);
}

TEST(ConvertBadInput, MissingScaleWrongDtypePartialExperts) {
  ExpectConvertRefuses([](auto& t) {
    std::erase_if(t, [](const TensorToWrite& x) { return x.name == "model.layers.1.experts.1.down_proj.weight_scale"; });
  }, "model.layers.1.experts.1.down_proj.weight_scale");
  ExpectConvertRefuses([](auto& t) {
    for (auto& x : t) if (x.name == "model.layers.0.self_attn.q_proj.weight_scale") x.dtype = DType::kU8;
  }, "model.layers.0.self_attn.q_proj.weight_scale");
  ExpectConvertRefuses([](auto& t) {
    std::erase_if(t, [](const TensorToWrite& x) { return x.name.find("layers.3.experts.6.") != std::string::npos; });
  }, "expert 6");
}

}  // namespace
}  // namespace gs
