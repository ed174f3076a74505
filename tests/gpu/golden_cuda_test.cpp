// The CUDA runner against transformers (float32, dequantized weights) on the golden configs
// (layout: tests/golden/golden_util.h), every checkpoint format, for prefill chunks of 1 (decode
// steps: the CUDA-graph path), 7 and the whole prompt; each with the BF16 and the FP8 (e4m3) KV
// cache (the _fp8kv tests). The CUDA runner keeps attention in BF16, so compressed-tensors
// checkpoints (4-bit attention) are compared with the reference's `ct_converted_variant` (the
// same weights with q/k/v/o rounded to bf16). Two golden sets, two criteria
// (docs/golden-precision.md):
//
// * tests/data/golden_bf16 (GS_GOLDEN_BF16_ROOT; make_golden.py --profile bf16, models
//   conditioned like trained ones; skipped loudly while absent): the criterion, per
//   prompt position KL(reference ‖ ours) < 1e-3 and the same argmax at ≥ 99% of positions. With
//   the FP8 KV cache a looser bound (kFp8Kv* below: e4m3 keeps 4 significant bits, bf16 8); the
//   line says whether the strict criterion was met too.
// * tests/data/golden (GS_GOLDEN_ROOT; random models on which bf16 activations alone exceed the
//   criterion, the CPU emulation shows): per case, the median KL at most 2× the median KL of the
//   CPU runner with all of the CUDA runner's bf16 rounding points emulated
//   (CpuRunnerOptions::bf16_round_points = all) on the same weights and prompt; FP8 KV adds a
//   fixed allowance.
//
// Every comparison prints one GOLDEN line (worst and median KL, positions over 1e-3, argmax
// agreement, the CPU emulation's median); a second test compares the CUDA runner with the CPU
// runner (fp32 activations) on each golden model cut to 1..N layers, which separates a kernel bug
// (wrong from the first layer, at most positions) from bf16 rounding amplified by near-tied
// router decisions through the random layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>

#include "golden/golden_bf16_util.h"
#include "golden/golden_util.h"
#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/generate.h"
#include "runtime/sampling.h"
#include "util/npy.h"
#include "util/str.h"

namespace gs {
namespace {

// FP8 (e4m3, per-(token, kv head) scale) KV cache on the conditioned set. Not measured yet: a
// first bound from the CPU ablation (docs/golden-precision.md): k and v rounded to bf16 alone
// give a median KL of ~1.3e-4 on the default set; e4m3 has 4 fewer significant bits (16× the
// rounding error, 256× the KL), which the conditioned models damp by ~100× (branches at 0.1 of
// the stream). Tighten to the strict criterion once a GPU run shows FP8 KV meets it.
constexpr double kFp8KvWorstKl = 1e-2;
constexpr double kFp8KvMedianKl = 1e-3;
constexpr double kFp8KvAgree = 0.95;

struct Case {
  std::string dir, format;
  std::string kv = "bf16";  // KV cache dtype of the CUDA runner (fp8: e4m3, per-row scales)
  bool conditioned = false;  // from the --profile bf16 set
};

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  const auto add_set = [&cases](const std::vector<std::string>& dirs, bool conditioned) {
    for (const auto& dir : dirs) {
      for (const char* kv : {"bf16", "fp8"}) {
        for (const char* f : {"bf16", "modelopt", "ct"}) cases.push_back({dir, f, kv, conditioned});
      }
    }
    if (dirs.empty()) cases.push_back({"", "", "bf16", conditioned});  // one test skips loudly
  };
  add_set(golden::GoldenConfigs(), false);
  add_set(golden::ConditionedGoldenConfigs(), true);
  return cases;
}

std::string MissingDataMessage(const Case& c) {
  return c.conditioned ? golden::NoConditionedDataMessage()
                       : "\n*** NO GOLDEN DATA in " + golden::DefaultGoldenRoot() + " ***";
}

class GoldenCuda : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenCuda, KlAndArgmaxMatchTransformers) {
  const Case& c = GetParam();
  if (c.dir.empty()) GTEST_SKIP() << MissingDataMessage(c);
  GS_REQUIRE_GPU();
  const auto ref = golden::ReadReference(c.dir);
  ASSERT_EQ(golden::IsConditioned(ref), c.conditioned)
      << c.dir << "/reference.json: \"profile\" does not match the golden set it is in";
  if (!ref["formats"].contains(c.format)) GTEST_SKIP() << "no " << c.format << " data";
  const auto& fmt = ref["formats"][c.format];
  const bool ct = c.format == "ct";
  if (ct && !ref.contains("ct_converted_variant")) GTEST_SKIP() << "no ct_converted_variant logits";
  const auto& ref_logits = ct ? ref["ct_converted_variant"]["logits"] : fmt["logits"];
  const std::string model_dir = c.dir + "/" + c.format;
  auto config = LoadModelConfig(model_dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, model_dir);
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  CudaRunnerOptions ro;
  ro.kv_cache_dtype = c.kv;
  auto runner = CreateCudaRunner(*config, *weights, KvSpecForSingleSequence(1024, 4), ro);
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  // The CPU bf16 emulation multiplies the weights the CUDA runner does (ct: bf16 attention).
  Gemma4Weights emulated_weights = *weights;
  std::deque<std::vector<uint16_t>> owned;
  if (ct) golden::AttentionToBf16(emulated_weights, &owned);
  const size_t vocab = static_cast<size_t>(config->vocab_size);
  const auto& prompts = ref["prompts"];
  const std::string name = std::filesystem::path(c.dir).filename().string();
  const bool fp8 = c.kv == "fp8";
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<int32_t> prompt = prompts[p].get<std::vector<int32_t>>();
    auto expected = ReadNpyFloat32(c.dir + "/" + ref_logits[p].get<std::string>());
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    const std::vector<float> emulated =
        golden::CpuBf16EmulationLogits(*config, emulated_weights, prompt, 0);
    ASSERT_EQ(emulated.size(), expected->data.size()) << "CPU bf16 emulation failed";
    const golden::KlSummary emu = golden::Summarize(expected->data, emulated, vocab);
    for (int chunk : {0, 1, 7}) {
      GenerateOptions opts;
      opts.max_tokens = 0;
      opts.prefill_chunk = chunk;
      opts.prompt_logits = true;
      auto got = Generate(**runner, prompt, opts);
      ASSERT_TRUE(got.ok()) << got.error().message;
      ASSERT_EQ(got->prompt_logits.size(), expected->data.size());
      const golden::KlSummary s = golden::Summarize(expected->data, got->prompt_logits, vocab);
      const std::string what = StrCat(c.format, " kv ", c.kv, " prompt ", p, " chunk ", chunk);
      std::cout << "GOLDEN " << (c.conditioned ? "[bf16-conditioned] " : "") << name << " "
                << c.format << (ct ? "(bf16 attn)" : "") << " kv " << c.kv << " p" << p
                << " chunk " << chunk << ": worst KL " << s.worst() << " at position "
                << s.worst_at << ", median " << s.median() << ", positions >= 1e-3: " << s.over()
                << "/" << prompt.size() << ", argmax agreement " << s.agree
                << "; cpu bf16 emulation: median " << emu.median() << ", worst " << emu.worst()
                << ", argmax agreement " << emu.agree;
      if (c.conditioned) {
        std::cout << "; strict criterion " << (s.MeetsCriterion() ? "met" : "MISSED") << "\n";
        if (!fp8) {
          EXPECT_LT(s.worst(), golden::kKlLimit) << what << ", position " << s.worst_at;
          EXPECT_GE(s.agree, golden::kAgreeLimit) << what;
        } else {
          EXPECT_LT(s.worst(), kFp8KvWorstKl) << what << ", position " << s.worst_at;
          EXPECT_LT(s.median(), kFp8KvMedianKl) << what;
          EXPECT_GE(s.agree, kFp8KvAgree) << what;
        }
      } else if (!fp8) {
        const double bound = golden::kEmulationMedianFactor * emu.median();
        std::cout << "; median bound " << bound << "\n";
        EXPECT_LE(s.median(), bound)
            << what << ": median KL " << s.median() << " vs the CPU bf16 emulation's "
            << emu.median();
      } else {
        // No CPU reference models an FP8 KV cache, and on these unconditioned models its error
        // is amplified like bf16's (docs/golden-precision.md): reported, asserted on the
        // conditioned set only. (H100, 2026-11-27: median up to 0.032 against an emulation
        // median of 1e-3 .. 1e-2.)
        std::cout << "; fp8 KV on the unconditioned set: reported only\n";
      }
      RecordProperty(StrCat(c.format, "_", c.kv, "kv_p", p, "_c", chunk, "_kl"),
                     std::to_string(s.worst()));
    }
  }
}

// CUDA vs CPU runner (same checkpoint, fp32 activations on the CPU) on the golden model cut to
// its first 1..N layers, prompt 0: prints worst / median KL per depth. A kernel bug shows at
// most positions from the layer it is in; rounding shows as a low median with isolated
// positions (router near-ties) whose error grows with depth. The median must stay below 1e-3 at
// every depth.
TEST_P(GoldenCuda, LayerByLayerAgainstCpuRunner) {
  const Case& c = GetParam();
  if (c.dir.empty()) GTEST_SKIP() << MissingDataMessage(c);
  if (c.format == "ct") GTEST_SKIP() << "ct: the CPU runner keeps 4-bit attention";
  if (c.kv != "bf16") GTEST_SKIP() << "fp8 KV: the layer-by-layer diagnosis runs with bf16 KV";
  GS_REQUIRE_GPU();
  const auto ref = golden::ReadReference(c.dir);
  if (!ref["formats"].contains(c.format)) GTEST_SKIP() << "no " << c.format << " data";
  const std::string model_dir = c.dir + "/" + c.format;
  auto full_config = LoadModelConfig(model_dir);
  ASSERT_TRUE(full_config.ok()) << full_config.error().message;
  auto full_weights = LoadGemma4Weights(*full_config, model_dir);
  ASSERT_TRUE(full_weights.ok()) << full_weights.error().message;
  const std::vector<int32_t> prompt = ref["prompts"][0].get<std::vector<int32_t>>();
  const int vocab = full_config->vocab_size;
  const std::string name = std::filesystem::path(c.dir).filename().string();
  for (int layers = 1; layers <= full_config->num_layers; ++layers) {
    ModelConfig config = *full_config;
    Gemma4Weights weights = *full_weights;
    config.num_layers = layers;
    config.layers.resize(static_cast<size_t>(layers));
    weights.layers.resize(static_cast<size_t>(layers));
    const KvCacheSpec spec = KvSpecForSingleSequence(1024, 4);
    CpuRunner cpu(config, weights, spec, CpuRunnerOptions{0, 0.0f});
    auto cuda = CreateCudaRunner(config, weights, spec);
    ASSERT_TRUE(cuda.ok()) << cuda.error().message;
    GenerateOptions o;
    o.max_tokens = 0;
    o.prompt_logits = true;
    auto want = Generate(cpu, prompt, o);
    auto got = Generate(**cuda, prompt, o);
    ASSERT_TRUE(want.ok() && got.ok());
    std::vector<double> kls;
    for (size_t t = 0; t < prompt.size(); ++t) {
      const double kl = gputest::KlDivergence(&want->prompt_logits[t * vocab],
                                              &got->prompt_logits[t * vocab], vocab);
      kls.push_back(kl == kl ? kl : 1e30);
    }
    std::sort(kls.begin(), kls.end());
    const auto over = std::count_if(kls.begin(), kls.end(), [](double k) { return k >= 1e-3; });
    std::cout << "LAYERS " << name << " " << c.format << " layers " << layers << ": worst KL "
              << kls.back() << ", median " << kls[kls.size() / 2] << ", positions >= 1e-3: "
              << over << "/" << kls.size() << "\n";
    // On the unconditioned set bf16 errors grow with depth (docs/golden-precision.md): there the
    // median is asserted after the first layer only (a kernel that is wrong from the start fails
    // it); on the conditioned set at every depth.
    if (c.conditioned || layers == 1) {
      EXPECT_LT(kls[kls.size() / 2], 1e-3) << "layers " << layers;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, GoldenCuda, ::testing::ValuesIn(AllCases()),
                         [](const auto& info) {
                           if (info.param.dir.empty()) {
                             return std::string(info.param.conditioned ? "NoConditionedGoldenData"
                                                                       : "NoGoldenData");
                           }
                           std::string name = std::filesystem::path(info.param.dir).filename().string() +
                                              "_" + info.param.format +
                                              (info.param.kv == "bf16" ? "" : "_fp8kv");
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace gs
