// One test per numerical trap of reference §7 (text model), each against an independent
// double-precision formula or an observable consequence in a whole model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_attention.h"
#include "runtime/cpu/cpu_moe.h"
#include "runtime/cpu/cpu_ops.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "tools/demo_model.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

std::vector<float> Ramp(size_t n, float a, float b) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = a + b * std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return v;
}

// §7.1: Gemma 4 RMSNorm multiplies by w, not (1 + w).
TEST(Gemma4Traps, RmsNormUsesPlainWeight) {
  const int n = 64;
  auto x = Ramp(n, 0.3f, 2.0f);
  auto w = Ramp(n, 0.5f, 0.4f);
  auto y = x;
  cpu::RmsNorm(y.data(), 1, n, w, 1e-6f);
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(y[i], x[i] * inv * w[i], 1e-5) << i;
    EXPECT_GT(std::fabs(y[i] - x[i] * inv * (1.0 + w[i])), 1e-3) << "looks like (1 + w) at " << i;
  }
}

// §7.9: the embedding multiplier is bf16(√2816) = 53.0, not 53.066.
TEST(Gemma4Traps, EmbeddingScaleIsBf16Rounded) {
  EXPECT_EQ(RoundToBf16(std::sqrt(2816.0f)), 53.0f);
  EXPECT_NE(std::sqrt(2816.0f), 53.0f);
}

// §7.2: proportional RoPE rotates pairs (i, i + 256) for i < 64 of a 512-dim head with
// exponent 2i/512; dims 64..255 and 320..511 pass through.
TEST(Gemma4Traps, ProportionalRopePairing) {
  RopeConfig rope;
  rope.type = RopeType::kProportional;
  rope.theta = 1e6;
  rope.partial_rotary_factor = 0.25;
  const auto inv = rope.InverseFrequencies(512);
  auto head = Ramp(512, 0.1f, 1.0f);
  const auto orig = head;
  const int pos = 777;
  cpu::ApplyRope(head.data(), 512, pos, inv);
  for (int i = 0; i < 256; ++i) {
    if (i >= 64) {
      EXPECT_EQ(head[i], orig[i]) << i;
      EXPECT_EQ(head[i + 256], orig[i + 256]) << i + 256;
      continue;
    }
    const double angle = static_cast<double>(static_cast<float>(pos) *
                                             static_cast<float>(std::pow(1e6, -2.0 * i / 512)));
    const double c = std::cos(angle), s = std::sin(angle);
    EXPECT_NEAR(head[i], orig[i] * c - orig[i + 256] * s, 2e-5) << i;
    EXPECT_NEAR(head[i + 256], orig[i + 256] * c + orig[i] * s, 2e-5) << i;
  }
}

// §7.7: attention logits are q·k with scale 1.0 and no softcap; sliding window bounds the keys.
TEST(Gemma4Traps, AttentionScaleIsOneAndWindowIsExact) {
  ModelConfig mc;
  mc.sliding_window = 3;
  LayerConfig lc;
  lc.kind = LayerKind::kSliding;
  lc.head_dim = 4;
  lc.num_kv_heads = 1;
  mc.layers = {lc};
  KvCacheSpec spec{1, 4, 2};
  cpu::KvCache cache(mc, spec);
  const int n = 5;
  auto q = Ramp(n * 4, 0.5f, 3.0f), k = Ramp(n * 4, -0.2f, 2.5f), v = Ramp(n * 4, 1.0f, 1.0f);
  BatchSequence seq;
  seq.num_tokens = n;
  seq.block_table = {0, 1};
  cpu::AttentionChunk chunk{&mc.layers[0], 0, 1, 3, &seq, q.data(), k.data(), v.data()};
  std::vector<float> out(n * 4);
  ThreadPool pool(1);
  cpu::AttendAndCache(chunk, cache, out.data(), pool);
  for (int i = 0; i < n; ++i) {
    const int first = std::max(0, i - 2);
    std::vector<double> s;
    double mx = -1e30, sum = 0;
    for (int j = first; j <= i; ++j) {
      double d = 0;
      for (int x = 0; x < 4; ++x) d += static_cast<double>(q[i * 4 + x]) * k[j * 4 + x];
      s.push_back(d);
      mx = std::max(mx, d);
    }
    for (double& e : s) sum += e = std::exp(e - mx);
    for (int x = 0; x < 4; ++x) {
      double o = 0;
      for (int j = first; j <= i; ++j) o += s[static_cast<size_t>(j - first)] / sum * v[j * 4 + x];
      EXPECT_NEAR(out[i * 4 + x], o, 1e-5) << "query " << i << " dim " << x;
    }
  }
}

// §7.10 and §3.6: the router reads the un-normed residual h1 through a scale-free RMSNorm,
// × scale × H^-½; softmax over all experts, top-k, renormalised, × per_expert_scale.
TEST(Gemma4Traps, RouterMath) {
  ModelConfig mc;
  mc.hidden_size = 32;
  mc.num_experts = 6;
  mc.top_k_experts = 2;
  mc.rms_norm_eps = 1e-6;
  LayerWeights w;
  auto router_w = Ramp(6 * 32, 0.0f, 0.8f);
  std::vector<uint8_t> bf16(router_w.size() * 2);
  for (size_t i = 0; i < router_w.size(); ++i) {
    const uint16_t b = FloatToBf16(router_w[i]);
    router_w[i] = Bf16ToFloat(b);
    bf16[2 * i] = b & 0xff;
    bf16[2 * i + 1] = b >> 8;
  }
  w.router.rows = 6;
  w.router.cols = 32;
  w.router.data = bf16.data();
  w.router_scale = Ramp(32, 1.0f, 0.5f);
  w.per_expert_scale = {0.5f, 1.5f, 1.0f, 2.0f, 0.7f, 1.2f};
  auto h1 = Ramp(32, 3.0f, 5.0f);  // large mean: normed and un-normed differ a lot
  ThreadPool pool(1);
  const cpu::Routing r = cpu::Route(mc, w, h1.data(), 1, pool);

  double ss = 0;
  for (float v : h1) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / 32 + 1e-6);
  std::vector<double> logits(6);
  for (int e = 0; e < 6; ++e) {
    for (int i = 0; i < 32; ++i) {
      logits[e] += h1[i] * inv * w.router_scale[i] / std::sqrt(32.0) * router_w[e * 32 + i];
    }
  }
  std::vector<int> order(6);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const double p0 = 1.0, p1 = std::exp(logits[order[1]] - logits[order[0]]);
  EXPECT_EQ(r.experts[0], order[0]);
  EXPECT_EQ(r.experts[1], order[1]);
  EXPECT_NEAR(r.weights[0], p0 / (p0 + p1) * w.per_expert_scale[order[0]], 1e-5);
  EXPECT_NEAR(r.weights[1], p1 / (p0 + p1) * w.per_expert_scale[order[1]], 1e-5);
}

// §7.4: experts and the dense MLP use gelu with the tanh approximation, not exact erf GELU.
TEST(Gemma4Traps, GeluIsTanhApproximation) {
  for (double z = -6; z <= 6; z += 0.25) {
    const double tanh_gelu = 0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    EXPECT_NEAR(cpu::GeluTanh(static_cast<float>(z)), tanh_gelu, 1e-6) << z;
  }
  // The two differ by up to ~3e-4 (near |z| = 3): enough for a test to tell them apart.
  double max_diff = 0;
  for (double z = -6; z <= 6; z += 0.05) {
    const double erf_gelu = 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    max_diff = std::max(max_diff, std::fabs(cpu::GeluTanh(static_cast<float>(z)) - erf_gelu));
  }
  EXPECT_GT(max_diff, 2e-4);
}

// §3.7: final logits are 30·tanh(x/30).
TEST(Gemma4Traps, FinalSoftcap) {
  std::vector<float> x = {-100.0f, -3.0f, 0.0f, 12.5f, 40.0f};
  const auto orig = x;
  cpu::Softcap(x, 30.0f);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], 30.0 * std::tanh(orig[i] / 30.0), 1e-5);
  EXPECT_LT(x.back(), 30.0f);
}

class DemoModelTrap : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gs_traps_" + std::to_string(::getpid()));
    DemoModelOptions o;
    o.output_dir = dir_.string();
    o.overwrite = true;
    auto st = WriteDemoModel(o);
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto c = LoadModelConfig(dir_.string());
    ASSERT_TRUE(c.ok()) << c.error().message;
    config_ = *c;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<float> PromptLogits(Gemma4Weights w) {
    CpuRunner runner(config_, std::move(w), KvSpecForSingleSequence(64), CpuRunnerOptions{2, 0});
    GenerateOptions opts;
    opts.max_tokens = 0;
    opts.prompt_logits = true;
    auto r = Generate(runner, {2, 17, 300, 45, 9, 1000, 3}, opts);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r->prompt_logits : std::vector<float>{};
  }

  std::filesystem::path dir_;
  ModelConfig config_;
};

// §7.11: layer_scalar multiplies the whole residual stream. With the last layer's scalar at 0
// the final hidden state is exactly 0, so every logit is 0; scaling only the branch would not.
TEST_F(DemoModelTrap, LayerScalarScalesTheWholeStream) {
  auto w = LoadGemma4Weights(config_, dir_.string());
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto normal = PromptLogits(*w);
  ASSERT_FALSE(normal.empty());
  EXPECT_GT(std::fabs(normal[5]), 0.0f);
  w->layers.back().layer_scalar = 0.0f;
  for (float v : PromptLogits(*w)) ASSERT_EQ(v, 0.0f);
}

// §7.8: global layers of the demo model have no v_proj; V is the raw K projection, so the loader
// must accept the missing tensor and the model must depend on k_proj through V as well.
TEST_F(DemoModelTrap, KEqualsVOnGlobalLayers) {
  auto w = LoadGemma4Weights(config_, dir_.string());
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (size_t l = 0; l < config_.layers.size(); ++l) {
    EXPECT_EQ(w->layers[l].attn.v.empty(), config_.layers[l].k_eq_v) << l;
  }
  EXPECT_GE(config_.num_layers_of(LayerKind::kGlobal), 2);
}

}  // namespace
}  // namespace gs
