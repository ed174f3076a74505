// The engine with images (issue 7), on the transformers golden vision checkpoint
// (tests/data/golden_vision): greedy tokens equal transformers' (reference.json, full recompute
// per step) when the step budget is far smaller than the image (the image is one step, past the
// budget), with two requests at once, and when a tiny KV pool forces preemptions (the image is
// encoded again); a runner without a vision encoder refuses image requests; malformed image
// spans are refused by name. A recording runner checks that the images of a step reach the
// encoder in passes (ModelRunner::EncodeImages) within vision/encode_groups.h's bounds, and that an
// image the encoder refuses fails only its own request.
#include <gtest/gtest.h>

#include <condition_variable>
#include <random>
#include <mutex>

#include "engine/engine.h"
#include "golden/vision_golden_util.h"
#include "model/vision_weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/cpu/cpu_vision.h"
#include "unit/engine_test_util.h"
#include "vision/encode_groups.h"
#include "vision/image_decode.h"

namespace gs::test {
namespace {

// The CPU runner, recording each EncodeImages call (images and patches per call).
class EncodeRecordingRunner : public ModelRunner {
 public:
  explicit EncodeRecordingRunner(std::unique_ptr<ModelRunner> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  const KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  bool supports_slot_copy() const override { return inner_->supports_slot_copy(); }
  Status CopySlot(int src, int dst) override { return inner_->CopySlot(src, dst); }
  bool supports_vision() const override { return inner_->supports_vision(); }
  Status Forward(const Batch& batch, std::vector<float>* logits) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      in_forward_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !hold_; });
    }
    return inner_->Forward(batch, logits);
  }
  // Hold(): the next forward step waits until Release(), so that requests submitted meanwhile
  // are all queued when the engine schedules its following step.
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
    in_forward_ = false;
  }
  void WaitUntilHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_forward_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  Expected<std::vector<float>> EncodeImage(const ProcessedImage& image) override {
    ++single_calls_;
    return inner_->EncodeImage(image);
  }
  Expected<std::vector<std::vector<float>>> EncodeImages(
      const std::vector<const ProcessedImage*>& images) override {
    int64_t patches = 0;
    for (const ProcessedImage* p : images) patches += p->num_patches();
    calls_.push_back({static_cast<int>(images.size()), patches});
    return inner_->EncodeImages(images);  // the CPU runner's: one image after another
  }
  struct Call {
    int images = 0;
    int64_t patches = 0;
  };
  // Engine thread only while it runs; read after the requests finished.
  const std::vector<Call>& calls() const { return calls_; }
  int single_calls() const { return single_calls_; }
  int images_in_calls() const {
    int n = 0;
    for (const Call& c : calls_) n += c.images;
    return n;
  }

 private:
  std::unique_ptr<ModelRunner> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, in_forward_ = false;
  std::vector<Call> calls_;
  int single_calls_ = 0;  // by the inner runner's EncodeImages too
};

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

  std::unique_ptr<EncodeRecordingRunner> Recording(const KvCacheSpec& spec) {
    return std::make_unique<EncodeRecordingRunner>(Runner(spec));
  }

  // Submits `requests` while a one-token text request's step is held, so that the engine's next
  // step schedules all of them together.
  static std::vector<RequestHandle> SubmitTogether(Engine& engine, EncodeRecordingRunner& runner,
                                                   std::vector<Request> requests) {
    runner.Hold();
    Request warm = Greedy({2, 10, 11}, 1);
    warm.ignore_eos = true;
    auto hw = engine.Submit(std::move(warm));
    EXPECT_TRUE(hw.ok());
    runner.WaitUntilHeld();
    std::vector<RequestHandle> handles;
    for (Request& r : requests) {
      auto h = engine.Submit(std::move(r));
      EXPECT_TRUE(h.ok()) << h.error().message;
      if (h.ok()) handles.push_back(*h);
    }
    runner.Release();
    if (hw.ok()) ReadAll(*hw, 1);
    return handles;
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

// Three requests (1 + 2 + 1 images) prefilled in one step: one encoder pass of all four images,
// and still transformers' tokens.
TEST_F(EngineImages, OneEncoderPassPerStep) {
  EngineConfig ec;
  ec.max_num_seqs = 4;
  ec.max_num_batched_tokens = 512;  // 70 + 140 + 70 prompt tokens fit one step
  ec.enable_prefix_caching = false;
  auto runner = Recording(EngineKvSpec(ec, 64));
  auto engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  const std::vector<const GoldenPrompt*> order = {&(*prompts_)[0], &(*prompts_)[1],
                                                   &(*prompts_)[0]};
  std::vector<Request> requests;
  for (const GoldenPrompt* g : order) requests.push_back(Make(*g));
  const auto handles = SubmitTogether(**engine, *runner, std::move(requests));
  ASSERT_EQ(handles.size(), 3u);
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(ReadAll(handles[i], 1)[0].tokens, order[i]->greedy) << "request " << i;
  }
  EXPECT_EQ((*engine)->Metrics().images_encoded, 4u);
  ASSERT_EQ(runner->calls().size(), 1u) << "the step's four images were not encoded together";
  EXPECT_EQ(runner->calls()[0].images, 4);
  EXPECT_EQ(runner->calls()[0].patches, 3 * 21 * 27 + 42 * 12);  // images A, A, B, A
}

// Nine one-image requests in one step: passes of 8 and 1 images (kMaxImagesPerEncode), every
// request still gets transformers' tokens.
TEST_F(EngineImages, EncoderPassesAreBounded) {
  EngineConfig ec;
  ec.max_num_seqs = 10;
  ec.max_num_batched_tokens = 9 * 70 + 8;
  ec.enable_prefix_caching = false;
  auto runner = Recording(EngineKvSpec(ec, 64));
  ASSERT_EQ(kMaxImagesPerEncode, 8);
  auto engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::vector<Request> requests;
  for (int i = 0; i < 9; ++i) requests.push_back(Make((*prompts_)[0]));
  const auto handles = SubmitTogether(**engine, *runner, std::move(requests));
  ASSERT_EQ(handles.size(), 9u);
  for (auto& h : handles) EXPECT_EQ(ReadAll(h, 1)[0].tokens, (*prompts_)[0].greedy);
  ASSERT_EQ(runner->calls().size(), 2u);
  EXPECT_EQ(runner->calls()[0].images, 8);
  EXPECT_EQ(runner->calls()[1].images, 1);
  EXPECT_EQ((*engine)->Metrics().images_encoded, 9u);
}

// A request whose image the encoder refuses (rgb_2000x40 at budget 70: 177 patches wide, more
// than the 128-entry position table) fails with the encoder's reason; the request encoded in the
// same step still runs to transformers' tokens.
TEST_F(EngineImages, RefusedImageFailsOnlyItsRequest) {
  auto rgb = LoadImageFile(golden::VisionRoot() + "/images/rgb_2000x40.png");
  ASSERT_TRUE(rgb.ok()) << rgb.error().message;
  ImageProcessorOptions po;
  po.max_soft_tokens = 70;
  auto wide = PreprocessImage(*rgb, po);
  ASSERT_TRUE(wide.ok()) << wide.error().message;
  const int n = wide->num_soft_tokens;
  Request bad = Greedy({2, 10, 11, 500}, 4);
  bad.prompt.insert(bad.prompt.end(), static_cast<size_t>(n), config_->image_token_id);
  bad.prompt.insert(bad.prompt.end(), {502, 12, 13});
  bad.images.push_back({4, std::make_shared<const ProcessedImage>(std::move(*wide))});

  EngineConfig ec;
  ec.max_num_seqs = 3;
  ec.max_num_batched_tokens = 512;
  ec.enable_prefix_caching = false;
  auto runner = Recording(EngineKvSpec(ec, 32));
  auto engine = Engine::Create(*runner, ec);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::vector<Request> requests;
  requests.push_back(std::move(bad));
  requests.push_back(Make((*prompts_)[0]));
  const auto handles = SubmitTogether(**engine, *runner, std::move(requests));
  ASSERT_EQ(handles.size(), 2u);
  const RequestHandle& hb = handles[0];
  const RequestHandle& hg = handles[1];
  const SeqResult rb = ReadAll(hb, 1)[0];
  EXPECT_EQ(rb.finish, FinishReason::kError);
  ASSERT_FALSE(rb.events.empty());
  EXPECT_NE(rb.last().error.find("position_embedding_size = 128"), std::string::npos)
      << rb.last().error;
  EXPECT_EQ(ReadAll(hg, 1)[0].tokens, (*prompts_)[0].greedy);
  EXPECT_EQ((*engine)->Metrics().images_encoded, 1u);
  // The pass of both failed; then each image alone: the good one encoded, the wide one refused.
  ASSERT_EQ(runner->calls().size(), 3u);
  EXPECT_EQ(runner->calls()[0].images, 2);
  EXPECT_EQ(runner->calls()[1].images, 1);
  EXPECT_EQ(runner->calls()[2].images, 1);
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

// The cut of a step's images into passes: in order, each image once, ≤ 8 images and ≤ 20160
// patches a pass, an image larger than a pass alone.
TEST(EncodeGroups, BoundsEveryPass) {
  using Groups = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(PlanEncodeGroups({}), Groups{});
  EXPECT_EQ(PlanEncodeGroups(std::vector<int64_t>(9, 567)), (Groups{{0, 8}, {8, 9}}));
  // 1120-token images (10080 patches): two per pass exactly fill it.
  EXPECT_EQ(PlanEncodeGroups({10080, 10080, 10080}), (Groups{{0, 2}, {2, 3}}));
  EXPECT_EQ(PlanEncodeGroups({100, 30000, 100}, 8, 20160), (Groups{{0, 1}, {1, 2}, {2, 3}}));
  EXPECT_EQ(PlanEncodeGroups({5, 5, 5}, 2, 100), (Groups{{0, 2}, {2, 3}}));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, 4);
  const int64_t sizes[] = {567, 2520, 5040, 10080, 630};
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> p(static_cast<size_t>(trial % 40));
    for (auto& x : p) x = sizes[pick(rng)];
    size_t next = 0;
    for (const auto& [b, e] : PlanEncodeGroups(p)) {
      ASSERT_EQ(b, next);
      ASSERT_LT(b, e);
      ASSERT_LE(e - b, static_cast<size_t>(kMaxImagesPerEncode));
      int64_t sum = 0;
      for (size_t i = b; i < e; ++i) sum += p[i];
      ASSERT_LE(sum, kMaxPatchesPerEncode);
      // Greedy: the next image would not have fitted.
      if (e < p.size() && e - b < static_cast<size_t>(kMaxImagesPerEncode)) {
        ASSERT_GT(sum + p[e], kMaxPatchesPerEncode);
      }
      next = e;
    }
    ASSERT_EQ(next, p.size());
  }
}

// The pass the serving memory probe measures (runtime/cuda/serving_runner.h) is the largest the
// engine makes: exactly kMaxImagesPerEncode images and kMaxPatchesPerEncode patches, one pass for
// PlanEncodeGroups, and valid encoder input for the real tower and the golden one (128-entry
// position table).
TEST(EncodeGroups, WorstCasePassIsTheLargestAndValid) {
  const std::string real_dir = std::string(GS_SOURCE_DIR) + "/configs/gemma-4-26B-A4B-it";
  const std::string golden_dir = golden::VisionRoot() + "/model/bf16";
  for (const std::string& dir : {real_dir, golden_dir}) {
    SCOPED_TRACE(dir);
    auto c = LoadModelConfig(dir);
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_TRUE(c->vision.has_value());
    const std::vector<ProcessedImage> pass = WorstCaseEncodePass(*c->vision);
    ASSERT_EQ(static_cast<int>(pass.size()), kMaxImagesPerEncode);
    std::vector<int64_t> patches;
    int64_t total = 0;
    for (const ProcessedImage& img : pass) {
      EXPECT_TRUE(cpu::CheckVisionInput(*c->vision, img).ok());
      EXPECT_EQ(img.patches_h, 42);
      EXPECT_EQ(img.patches_w, 60);
      EXPECT_EQ(img.num_soft_tokens, 280);
      patches.push_back(img.num_patches());
      total += img.num_patches();
    }
    EXPECT_EQ(total, kMaxPatchesPerEncode);
    EXPECT_EQ(PlanEncodeGroups(patches).size(), 1u);
  }
  // A table too small for 60 patches a side: the largest grid it holds, still valid.
  VisionConfig small;
  small.patch_size = 16;
  small.pooling_kernel_size = 3;
  small.position_embedding_size = 30;
  const auto tight = WorstCaseEncodePass(small);
  ASSERT_FALSE(tight.empty());
  EXPECT_LE(tight[0].patches_w, 30);
  EXPECT_LE(tight[0].patches_h, 30);
  EXPECT_TRUE(cpu::CheckVisionInput(small, tight[0]).ok());
}

}  // namespace
}  // namespace gs::test
