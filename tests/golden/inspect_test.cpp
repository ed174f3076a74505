// `gemmaserve inspect` on the golden checkpoints: parameter counts per component agree with the
// config and across formats, convert -> inspect round trips, and broken checkpoints produce
// findings that name the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "golden/golden_util.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "tools/convert.h"
#include "tools/inspect.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json Inspect(const std::string& path) {
  InspectOptions o;
  o.path = path;
  o.max_model_len = 1000;
  auto r = InspectCheckpoint(o);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : json::object();
}

bool HasFinding(const json& r, const std::string& severity, const std::string& fragment) {
  for (const auto& f : r["findings"]) {
    if (f["severity"] == severity && f["message"].get<std::string>().find(fragment) != std::string::npos) return true;
  }
  return false;
}

class InspectGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(InspectGolden, CountsAgreeWithConfigAndAcrossFormats) {
  const std::string dir = GetParam();
  auto c = LoadModelConfig(dir + "/bf16");
  ASSERT_TRUE(c.ok());
  const int64_t h = c->hidden_size;
  const int64_t experts = int64_t{c->num_layers} * c->num_experts * 3 * c->moe_intermediate_size * h;
  const int64_t dense = int64_t{c->num_layers} * 3 * c->intermediate_size * h;
  for (const char* f : {"bf16", "modelopt", "ct"}) {
    const json r = Inspect(dir + "/" + f);
    EXPECT_EQ(r["groups"]["experts"]["parameters"].get<int64_t>(), experts) << f;
    EXPECT_EQ(r["groups"]["dense MLP"]["parameters"].get<int64_t>(), dense) << f;
    EXPECT_EQ(r["groups"]["embedding / tied lm_head"]["parameters"].get<int64_t>(), int64_t{c->vocab_size} * h) << f;
    EXPECT_TRUE(r.contains("loads")) << f;
    EXPECT_FALSE(HasFinding(r, "error", "")) << f << ": " << r["findings"].dump();
    const bool quantized = std::string(f) != "bf16";
    EXPECT_EQ(r["groups"]["experts"]["formats"].contains("nvfp4"), quantized) << f;
    // The golden recipe gives gate and up their own global scales.
    EXPECT_EQ(r["gate_up_scale_pairs"]["mismatched"].get<int>() > 0, quantized) << f;
  }
  // Convert -> inspect round trip: attention is BF16 again, experts stay NVFP4.
  const fs::path out = fs::temp_directory_path() / ("gs_inspect_" + std::to_string(::getpid()));
  fs::remove_all(out);
  ASSERT_TRUE(ConvertCompressedTensorsToModelopt({dir + "/ct", out.string(), false, 1u << 30}).ok());
  const json r = Inspect(out.string());
  EXPECT_EQ(r["quantization"]["method"], "modelopt");
  EXPECT_TRUE(r["groups"]["attention"]["formats"].contains("BF16"));
  EXPECT_FALSE(r["groups"]["attention"]["formats"].contains("nvfp4"));
  EXPECT_EQ(r["groups"]["experts"]["parameters"].get<int64_t>(), experts);
  EXPECT_FALSE(HasFinding(r, "error", "")) << r["findings"].dump();
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Golden, InspectGolden, ::testing::ValuesIn(golden::GoldenConfigs()),
                         [](const auto& info) { return fs::path(info.param).filename().string(); });

// A modelopt golden copy with tensors edited by `edit`.
json InspectBroken(const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  const std::string src = golden::GoldenConfigs().front() + "/modelopt";
  const fs::path dir = fs::temp_directory_path() / ("gs_inspect_bad_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "hf_quant_config.json"}) fs::copy_file(fs::path(src) / f, dir / f);
  std::vector<TensorToWrite> tensors;
  {
    auto store = TensorStore::OpenDirectory(src);
    EXPECT_TRUE(store.ok());
    for (const auto& [name, v] : store->all()) {
      tensors.push_back({name, v->dtype, v->shape, std::vector<uint8_t>(v->data, v->data + v->nbytes)});
    }
  }
  edit(tensors);
  EXPECT_TRUE(WriteSafetensors((dir / "model.safetensors").string(), tensors).ok());
  json r = Inspect(dir.string());
  fs::remove_all(dir);
  return r;
}

TensorToWrite& Named(std::vector<TensorToWrite>& t, const std::string& suffix) {
  for (auto& x : t) if (x.name.ends_with(suffix)) return x;
  ADD_FAILURE() << "no tensor ending in " << suffix;
  return t.front();
}

TEST(InspectFindings, ZeroGlobalScaleNanWeightsAndPartialExperts) {
  json r = InspectBroken([](auto& t) {
    auto& s = Named(t, "layers.1.experts.2.down_proj.weight_scale_2");
    const float zero = 0.0f;
    std::memcpy(s.bytes.data(), &zero, 4);
  });
  EXPECT_TRUE(HasFinding(r, "error", "layers.1.experts.2.down_proj.weight_scale_2")) << r["findings"].dump();

  r = InspectBroken([](auto& t) {
    auto& w = Named(t, "layers.0.self_attn.q_proj.weight");
    const uint16_t nan = 0x7fc0;
    std::memcpy(w.bytes.data() + 20, &nan, 2);
  });
  EXPECT_TRUE(HasFinding(r, "error", "layers.0.self_attn.q_proj.weight': 1 NaN/Inf")) << r["findings"].dump();

  r = InspectBroken([](auto& t) {
    std::erase_if(t, [](const TensorToWrite& x) { return x.name.find("layers.2.experts.5.") != std::string::npos; });
  });
  EXPECT_TRUE(HasFinding(r, "error", "expert 5")) << r["findings"].dump();

  r = InspectBroken([](auto& t) { Named(t, "layers.0.mlp.gate_proj.weight_scale").bytes[0] = 0xff; });
  EXPECT_TRUE(HasFinding(r, "error", "NaN")) << r["findings"].dump();
}

}  // namespace
}  // namespace gs
