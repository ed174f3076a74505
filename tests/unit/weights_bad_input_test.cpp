// Malformed checkpoints: each defect gives an error that names the tensor or field, never a
// crash. The checkpoints are the demo model with one thing broken.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "tools/demo_model.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

class BrokenCheckpoint : public ::testing::Test {
 protected:
  // The demo model is written once; each test gets a fresh directory with its JSON files.
  static void SetUpTestSuite() {
    template_dir_ = fs::temp_directory_path() / ("gs_bad_template_" + std::to_string(::getpid()));
    DemoModelOptions o;
    o.output_dir = template_dir_.string();
    o.overwrite = true;
    ASSERT_TRUE(WriteDemoModel(o).ok());
    auto store = TensorStore::OpenDirectory(template_dir_.string());
    ASSERT_TRUE(store.ok());
    for (const auto& [name, view] : store->all()) {
      TensorToWrite t{name, view->dtype, view->shape,
                      std::vector<uint8_t>(view->data, view->data + view->nbytes)};
      tensors_.push_back(std::move(t));
    }
  }
  static void TearDownTestSuite() { fs::remove_all(template_dir_); }

  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gs_bad_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"config.json", "generation_config.json", "hf_quant_config.json"}) {
      fs::copy_file(template_dir_ / f, dir_ / f);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Rewrites model.safetensors with `edit` applied, then loads; returns the error message.
  std::string LoadWith(const std::function<void(std::vector<TensorToWrite>&)>& edit) {
    auto tensors = tensors_;
    edit(tensors);
    EXPECT_TRUE(WriteSafetensors((dir_ / "model.safetensors").string(), tensors).ok());
    auto config = LoadModelConfig(dir_.string());
    if (!config.ok()) return config.error().message;
    auto w = LoadGemma4Weights(*config, dir_.string());
    return w.ok() ? std::string("<loaded>") : w.error().message;
  }

  static void Remove(std::vector<TensorToWrite>& t, const std::string& name) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& x) { return x.name == name; }), t.end());
  }
  static TensorToWrite& Get(std::vector<TensorToWrite>& t, const std::string& name) {
    return *std::find_if(t.begin(), t.end(), [&](const auto& x) { return x.name == name; });
  }

  fs::path dir_;
  static inline fs::path template_dir_;
  static inline std::vector<TensorToWrite> tensors_;
};

#define EXPECT_MENTIONS(msg, fragment) \
  EXPECT_NE((msg).find(fragment), std::string::npos) << (msg)

TEST_F(BrokenCheckpoint, IntactDemoLoads) { EXPECT_EQ(LoadWith([](auto&) {}), "<loaded>"); }

TEST_F(BrokenCheckpoint, MissingBlockScale) {
  const auto msg = LoadWith([](auto& t) { Remove(t, "model.layers.1.experts.3.up_proj.weight_scale"); });
  EXPECT_MENTIONS(msg, "model.layers.1.experts.3.up_proj.weight_scale");
}

TEST_F(BrokenCheckpoint, MissingGlobalScale) {
  const auto msg = LoadWith([](auto& t) { Remove(t, "model.layers.0.mlp.down_proj.weight_scale_2"); });
  EXPECT_MENTIONS(msg, "model.layers.0.mlp.down_proj.weight_scale_2");
}

TEST_F(BrokenCheckpoint, PartialExperts) {
  const auto msg = LoadWith([](auto& t) {
    for (const char* p : {"gate_proj", "up_proj", "down_proj"}) {
      for (const char* s : {".weight", ".weight_scale", ".weight_scale_2", ".input_scale"}) {
        Remove(t, std::string("model.layers.4.experts.7.") + p + s);
      }
    }
  });
  EXPECT_MENTIONS(msg, "expert 7");
  EXPECT_MENTIONS(msg, "model.layers.4.");
}

TEST_F(BrokenCheckpoint, WrongDtypeOfScales) {
  const auto msg = LoadWith([](auto& t) { Get(t, "model.layers.2.experts.0.gate_proj.weight_scale").dtype = DType::kU8; });
  EXPECT_MENTIONS(msg, "model.layers.2.experts.0.gate_proj.weight_scale");
  EXPECT_MENTIONS(msg, "F8_E4M3");
}

TEST_F(BrokenCheckpoint, WrongShape) {
  const auto msg = LoadWith([](auto& t) {
    auto& w = Get(t, "model.layers.0.self_attn.k_proj.weight");
    w.shape = {w.shape[1], w.shape[0]};
  });
  EXPECT_MENTIONS(msg, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_MENTIONS(msg, "expected [128, 256]");
}

TEST_F(BrokenCheckpoint, NonPositiveGlobalScale) {
  const auto msg = LoadWith([](auto& t) {
    auto& s = Get(t, "model.layers.3.experts.1.down_proj.weight_scale_2");
    const float neg = -1.0f;
    std::memcpy(s.bytes.data(), &neg, 4);
  });
  EXPECT_MENTIONS(msg, "model.layers.3.experts.1.down_proj.weight_scale_2");
}

TEST_F(BrokenCheckpoint, NanBlockScale) {
  const auto msg = LoadWith([](auto& t) { Get(t, "model.layers.5.mlp.up_proj.weight_scale").bytes[3] = 0x7f; });
  EXPECT_MENTIONS(msg, "model.layers.5.mlp.up_proj.weight_scale");
  EXPECT_MENTIONS(msg, "NaN");
}

TEST_F(BrokenCheckpoint, MissingNorm) {
  const auto msg = LoadWith([](auto& t) { Remove(t, "model.layers.2.post_feedforward_layernorm_2.weight"); });
  EXPECT_MENTIONS(msg, "model.layers.2.post_feedforward_layernorm_2.weight");
}

TEST_F(BrokenCheckpoint, Nvfp4TensorsWithoutQuantizationConfig) {
  fs::remove(dir_ / "hf_quant_config.json");
  auto cfg = nlohmann::json::parse(*ReadTextFile((dir_ / "config.json").string()));
  cfg.erase("quantization_config");
  ASSERT_TRUE(WriteTextFile((dir_ / "config.json").string(), cfg.dump()).ok());
  const auto msg = LoadWith([](auto&) {});
  EXPECT_MENTIONS(msg, "ModelOpt NVFP4");
  EXPECT_MENTIONS(msg, "none (BF16)");
}

TEST_F(BrokenCheckpoint, UnsupportedQuantAlgo) {
  auto cfg = nlohmann::json::parse(*ReadTextFile((dir_ / "hf_quant_config.json").string()));
  cfg["quantization"]["quant_algo"] = "FP8";
  ASSERT_TRUE(WriteTextFile((dir_ / "hf_quant_config.json").string(), cfg.dump()).ok());
  const auto msg = LoadWith([](auto&) {});
  EXPECT_MENTIONS(msg, "hf_quant_config.json");
  EXPECT_MENTIONS(msg, "FP8");
}

TEST_F(BrokenCheckpoint, BadQuantizationJson) {
  ASSERT_TRUE(WriteTextFile((dir_ / "hf_quant_config.json").string(), "{\"quantization\": [").ok());
  const auto msg = LoadWith([](auto&) {});
  EXPECT_MENTIONS(msg, "hf_quant_config.json");
}

TEST_F(BrokenCheckpoint, TruncatedFileIsCaughtByTheLoader) {
  auto tensors = tensors_;
  ASSERT_TRUE(WriteSafetensors((dir_ / "model.safetensors").string(), tensors).ok());
  fs::resize_file(dir_ / "model.safetensors", fs::file_size(dir_ / "model.safetensors") / 2);
  auto config = LoadModelConfig(dir_.string());
  ASSERT_TRUE(config.ok());
  auto w = LoadGemma4Weights(*config, dir_.string());
  ASSERT_FALSE(w.ok());
  EXPECT_MENTIONS(w.error().message, "model.safetensors");
}

}  // namespace
}  // namespace gs
