// config.json parsing: the real 26B-A4B config in both spellings of the global-layer fields,
// text-only and multimodal forms, and every malformed or unsupported field named in the error.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

using nlohmann::json;

json RealConfig() {
  auto text = ReadTextFile(std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it/config.json");
  EXPECT_TRUE(text.ok());
  return json::parse(*text);
}

Expected<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump(), "config.json"); }

void ExpectError(const json& j, const std::string& fragment) {
  auto c = Parse(j);
  ASSERT_FALSE(c.ok()) << "accepted: " << j.dump().substr(0, 200);
  EXPECT_NE(c.error().message.find(fragment), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("config.json"), std::string::npos) << c.error().message;
}

void ExpectReal26B(const ModelConfig& c) {
  EXPECT_TRUE(c.multimodal);
  EXPECT_EQ(c.hidden_size, 2816);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.top_k_experts, 8);
  EXPECT_EQ(c.moe_intermediate_size, 704);
  EXPECT_EQ(c.intermediate_size, 2112);
  EXPECT_DOUBLE_EQ(c.final_logit_softcapping, 30.0);
  ASSERT_EQ(c.layers.size(), 30u);
  for (int l = 0; l < 30; ++l) {
    const LayerConfig& lc = c.layers[static_cast<size_t>(l)];
    const bool global = l % 6 == 5;
    EXPECT_EQ(lc.kind == LayerKind::kGlobal, global) << l;
    EXPECT_EQ(lc.head_dim, global ? 512 : 256) << l;
    EXPECT_EQ(lc.num_kv_heads, global ? 2 : 8) << l;
    EXPECT_EQ(lc.k_eq_v, global) << l;
    EXPECT_EQ(lc.rope.type, global ? RopeType::kProportional : RopeType::kDefault);
    EXPECT_DOUBLE_EQ(lc.rope.theta, global ? 1e6 : 1e4);
  }
  ASSERT_TRUE(c.vision.has_value());
  EXPECT_EQ(c.vision->hidden_size, 1152);
  EXPECT_EQ(c.vision->num_layers, 27);
  EXPECT_EQ(c.image_token_id, 258880);
  EXPECT_EQ(c.num_layers_of(LayerKind::kGlobal), 5);
}

TEST(Config, Real26BWithGlobalHeadDimFields) {
  auto c = Parse(RealConfig());
  ASSERT_TRUE(c.ok()) << c.error().message;
  ExpectReal26B(*c);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{1, 106}));
}

TEST(Config, Real26BWithPerLayerConfigSpelling) {
  json j = RealConfig();
  json& t = j["text_config"];
  t.erase("global_head_dim");
  t.erase("num_global_key_value_heads");
  for (int l = 5; l < 30; l += 6) {
    t["per_layer_config"][std::to_string(l)] = {{"head_dim", 512}, {"num_key_value_heads", 2}};
  }
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ExpectReal26B(*c);
}

TEST(Config, TextOnlyForm) {
  json j = RealConfig()["text_config"];
  j["architectures"] = {"Gemma4ForCausalLM"};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->multimodal);
  EXPECT_FALSE(c->vision.has_value());
  EXPECT_EQ(c->layers[5].head_dim, 512);
}

TEST(Config, GenerationConfigSetsStopIdsAndDefaults) {
  auto dir = std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it";
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{1, 106, 50}));
  EXPECT_EQ(c->generation.top_k, 64);
  EXPECT_DOUBLE_EQ(c->generation.top_p, 0.95);
  EXPECT_TRUE(c->generation.do_sample);
  ModelConfig bad = *c;
  auto st = ApplyGenerationConfig(R"({"eos_token_id": "x"})", "generation_config.json", &bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("eos_token_id"), std::string::npos);
}

TEST(Config, ProportionalRopeFrequencies) {
  auto c = Parse(RealConfig());
  ASSERT_TRUE(c.ok());
  // Global: 64 live pairs with exponent over the full head_dim 512, the other 192 pairs fixed.
  const auto inv = c->layers[5].rope.InverseFrequencies(512);
  ASSERT_EQ(inv.size(), 256u);
  for (int i = 0; i < 256; ++i) {
    const double want = i < 64 ? std::pow(1e6, -2.0 * i / 512.0) : 0.0;
    EXPECT_NEAR(inv[static_cast<size_t>(i)], want, want * 1e-6 + 1e-30) << i;
  }
  const auto sliding = c->layers[0].rope.InverseFrequencies(256);
  for (int i = 0; i < 128; ++i) {
    EXPECT_NEAR(sliding[static_cast<size_t>(i)], std::pow(1e4, -2.0 * i / 256.0), 1e-7) << i;
  }
}

TEST(Config, MissingAndIllTypedFieldsAreNamed) {
  json j = RealConfig();
  j["text_config"].erase("hidden_size");
  ExpectError(j, "text_config.hidden_size");
  j = RealConfig();
  j["text_config"]["num_experts"] = "128";
  ExpectError(j, "text_config.num_experts");
  j = RealConfig();
  j["text_config"]["layer_types"].erase(0);
  ExpectError(j, "layer_types");
  j = RealConfig();
  j["text_config"]["layer_types"][3] = "chunked_attention";
  ExpectError(j, "chunked_attention");
  j = RealConfig();
  j["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
  ExpectError(j, "yarn");
  j = RealConfig();
  j["text_config"]["rope_parameters"].erase("sliding_attention");
  ExpectError(j, "sliding_attention");
  j = RealConfig();
  j["text_config"]["top_k_experts"] = 200;
  ExpectError(j, "top_k_experts");
  j = RealConfig();
  j["text_config"]["per_layer_config"] = {{"99", {{"head_dim", 512}}}};
  ExpectError(j, "per_layer_config");
  j = RealConfig();
  j["text_config"]["hidden_activation"] = "silu";
  ExpectError(j, "hidden_activation");
  ExpectError(json::array(), "top level");
  auto c = ParseModelConfig("{not json", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("not valid JSON"), std::string::npos);
}

TEST(Config, UnsupportedFeaturesOfOtherSizesAreRejected) {
  json j = RealConfig();
  j["text_config"]["hidden_size_per_layer_input"] = 256;
  ExpectError(j, "per-layer embeddings");
  j = RealConfig();
  j["text_config"]["num_kv_shared_layers"] = 20;
  ExpectError(j, "KV-shared");
  j = RealConfig();
  j["text_config"]["use_double_wide_mlp"] = true;
  ExpectError(j, "double-wide");
  j = RealConfig();
  j["audio_config"] = {{"hidden_size", 1024}};
  ExpectError(j, "audio");
  j = RealConfig();
  j["text_config"]["use_bidirectional_attention"] = "all";
  ExpectError(j, "use_bidirectional_attention");
  j = RealConfig();
  j["model_type"] = "llama";
  j.erase("text_config");
  ExpectError(j, "not a Gemma 4 config");
}

}  // namespace
}  // namespace gs
