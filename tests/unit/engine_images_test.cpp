// The engine with images (issue 7), on the transformers golden vision checkpoint
// (tests/data/golden_vision): greedy tokens equal transformers' (reference.json, full recompute
// per step) when the step budget is far smaller than the image (the image is one step, past the
// budget), with two requests at once, and when a tiny KV pool forces preemptions (the image is
// encoded again); a runner without a vision encoder refuses image requests; malformed image
// spans are refused by name.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "golden/vision_golden_util.h"
#include "model/vision_weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "unit/engine_test_util.h"
#include "vision/image_decode.h"

namespace gs::test {
namespace {

struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<RequestImage> images;
  std::vector<int32_t> greedy;
};

class EngineImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string root = golden::VisionRoot();
    auto c = LoadModelConfig(root + "/model/bf16");
    ASSERT_TRUE(c.ok()) << c.error().message;
    config_ = new ModelConfig(*c);
    auto w = LoadGemma4Weights(*config_, root + "/model/bf16");
    ASSERT_TRUE(w.ok()) << w.error().message;
    weights_ = new Gemma4Weights(*w);
    const auto ref = golden::ReadJsonFile(root + "/model/reference.json");
    prompts_ = new std::vector<GoldenPrompt>();
    ImageProcessorOptions po;
    po.max_soft_tokens = ref["max_soft_tokens"];
    for (const auto& p : ref["prompts"]) {
      GoldenPrompt g;
      g.ids = p["ids"].get<std::vector<int32_t>>();
      g.greedy = p["greedy"].get<std::vector<int32_t>>();
      size_t next = 0;
      for (size_t i = 0; i < g.ids.size(); ++i) {
        if (g.ids[i] != ref["boi_token_id"]) continue;
        auto rgb = LoadImageFile(root + "/images/" + p["images"][next++].get<std::string>());
        ASSERT_TRUE(rgb.ok());
        auto processed = PreprocessImage(*rgb, po);
        ASSERT_TRUE(processed.ok());
        g.images.push_back({static_cast<int>(i) + 1,
                            std::make_shared<const ProcessedImage>(std::move(*processed))});
      }
      prompts_->push_back(std::move(g));
    }
  }

  std::unique_ptr<CpuRunner> Runner(const KvCacheSpec& spec, bool vision = true) {
    auto r = std::make_unique<CpuRunner>(*config_, *weights_, spec, CpuRunnerOptions{2, 0.0f});
    if (vision) {
      auto v = BindVisionWeights(*config_, weights_->store);
      EXPECT_TRUE(v.ok()) << v.error().message;
      EXPECT_TRUE(r->AttachVision(std::move(*v)).ok());
    }
    return r;
  }

  static Request Make(const GoldenPrompt& g) {
    Request r = Greedy(g.ids, static_cast<int>(g.greedy.size()));
    r.ignore_eos = true;
    r.images = g.images;
    return r;
  }

  static ModelConfig* config_;
  static Gemma4Weights* weights_;
  static std::vector<GoldenPrompt>* prompts_;
};

ModelConfig* EngineImages::config_ = nullptr;
Gemma4Weights* EngineImages::weights_ = nullptr;
std::vector<GoldenPrompt>* EngineImages::prompts_ = nullptr;

TEST_F(EngineImages, SmallStepBudgetTwoRequestsAtOnce) {
  EngineConfig ec;
  ec.max_num_seqs = 2;
  ec.max_num_batched_tokens = 8;  // images have 63 and 56 soft tokens
  auto runner = Runner(EngineKvSpec(ec, 64));
  auto engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::vector<RequestHandle> handles;
  for (const GoldenPrompt& g : *prompts_) {
    auto h = (*engine)->Submit(Make(g));
    ASSERT_TRUE(h.ok()) << h.error().message;
    handles.push_back(*h);
  }
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(ReadAll(handles[i], 1)[0].tokens, (*prompts_)[i].greedy) << "prompt " << i;
  }
  EXPECT_EQ((*engine)->Metrics().images_encoded, 3u);  // 1 + 2 images, no preemption
}

TEST_F(EngineImages, PreemptionEncodesAgain) {
  EngineConfig ec;
  ec.max_num_seqs = 3;
  ec.max_num_batched_tokens = 32;  // all three start, then grow into each other
  ec.enable_prefix_caching = false;
  // 13 blocks of 16: one 148-token sequence needs 10; three of them cannot run together.
  auto runner = Runner(EngineKvSpec(ec, 13, 0));
  auto engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  const GoldenPrompt& g = (*prompts_)[1];
  std::vector<RequestHandle> handles;
  for (int i = 0; i < 3; ++i) {
    auto h = (*engine)->Submit(Make(g));
    ASSERT_TRUE(h.ok()) << h.error().message;
    handles.push_back(*h);
  }
  for (auto& h : handles) EXPECT_EQ(ReadAll(h, 1)[0].tokens, g.greedy);
  const EngineMetrics m = (*engine)->Metrics();
  EXPECT_GT(m.preemptions, 0u);
  EXPECT_GT(m.images_encoded, 6u) << "a preempted sequence's images are encoded again";
}

TEST_F(EngineImages, RefusedWithoutVisionOrWithBadSpans) {
  EngineConfig ec;
  ec.max_num_seqs = 1;
  auto plain = Runner(EngineKvSpec(ec, 32), false);
  auto engine = Engine::Create(*plain, ec);
  ASSERT_TRUE(engine.ok());
  SubmitError kind;
  auto r = (*engine)->Submit(Make((*prompts_)[0]), &kind);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(kind, SubmitError::kInvalidRequest);
  EXPECT_NE(r.error().message.find("no vision support"), std::string::npos) << r.error().message;

  auto runner = Runner(EngineKvSpec(ec, 32));
  auto vision_engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(vision_engine.ok());
  Request shifted = Make((*prompts_)[0]);
  shifted.images[0].first_token -= 1;  // starts on boi
  auto s = (*vision_engine)->Submit(shifted, &kind);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("is not the image token"), std::string::npos) << s.error().message;
  Request past = Make((*prompts_)[0]);
  past.images[0].first_token = static_cast<int>(past.prompt.size()) - 3;
  EXPECT_FALSE((*vision_engine)->Submit(past).ok());
  Request empty = Make((*prompts_)[0]);
  empty.images[0].image = nullptr;
  EXPECT_FALSE((*vision_engine)->Submit(empty).ok());
  // And a good one still runs.
  auto ok = (*vision_engine)->Submit(Make((*prompts_)[0]));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ReadAll(*ok, 1)[0].tokens, (*prompts_)[0].greedy);
}

}  // namespace
}  // namespace gs::test
