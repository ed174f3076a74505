// Image prompts through the CPU runner against transformers 5.17's Gemma4ForConditionalGeneration
// (tests/data/golden_vision/model, a small random model with a 2-layer vision tower): the image
// soft tokens (vision encoder + projector), the logits of every prompt position within 1e-3
// relative L2, the greedy continuation, chunked prefill that keeps each image whole, and the
// attention masks transformers used (bidirectional image spans on sliding layers only). The same
// checks run on tests/data/golden_vision_bf16 (make_golden_vision.py --profile bf16) when it is
// present, plus the margins that set promises (ConditionedSetIsConditioned).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "golden/golden_util.h"
#include "golden/vision_golden_util.h"
#include "model/config.h"
#include "model/vision_weights.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "util/npy.h"
#include "vision/image_decode.h"
#include "vision/image_processor.h"

namespace gs {
namespace {

constexpr double kTolerance = 1e-3;

std::string ModelDir() { return golden::VisionRoot() + "/model"; }

std::unique_ptr<CpuRunner> MakeRunner(const std::string& model_dir, int max_tokens) {
  auto config = LoadModelConfig(model_dir + "/bf16");
  EXPECT_TRUE(config.ok()) << config.error().message;
  if (!config.ok()) return nullptr;
  auto weights = LoadGemma4Weights(*config, model_dir + "/bf16");
  EXPECT_TRUE(weights.ok()) << weights.error().message;
  if (!weights.ok()) return nullptr;
  auto vision = BindVisionWeights(*config, weights->store);
  EXPECT_TRUE(vision.ok()) << vision.error().message;
  if (!vision.ok()) return nullptr;
  auto runner = std::make_unique<CpuRunner>(*config, std::move(*weights),
                                            KvSpecForSingleSequence(max_tokens, 4),
                                            CpuRunnerOptions{2, 0.0f});
  EXPECT_TRUE(runner->AttachVision(std::move(*vision)).ok());
  return runner;
}

// [begin, end) runs of `image_token` in the prompt.
std::vector<std::pair<int, int>> ImageRuns(const std::vector<int32_t>& ids, int32_t image_token) {
  std::vector<std::pair<int, int>> runs;
  for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
    if (ids[static_cast<size_t>(i)] != image_token) continue;
    if (runs.empty() || runs.back().second != i) runs.emplace_back(i, i);
    runs.back().second = i + 1;
  }
  return runs;
}

TEST(VisionGolden, ConfigAndWeights) {
  auto config = LoadModelConfig(ModelDir() + "/bf16");
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_TRUE(config->vision.has_value());
  EXPECT_EQ(config->image_token_id, 501);
  EXPECT_EQ(config->boi_token_id, 500);
  EXPECT_EQ(config->eoi_token_id, 502);
  EXPECT_EQ(config->vision->num_layers, 2);
  EXPECT_TRUE(config->vision->standardize);
  auto vision = LoadVisionWeights(*config, ModelDir() + "/bf16");
  ASSERT_TRUE(vision.ok()) << vision.error().message;
  EXPECT_EQ(vision->layers.size(), 2u);
  EXPECT_EQ(vision->std_bias.size(), 48u);
}

// Soft tokens, logits (foundation tolerance), greedy, chunking and masks of every prompt of the
// set under `root` (tests/data/golden_vision or golden_vision_bf16: the same layout).
void CheckImagePrompts(const std::string& root) {
  const std::string model_dir = root + "/model";
  const auto ref = golden::ReadJsonFile(model_dir + "/reference.json");
  const auto masks = golden::ReadJsonFile(model_dir + "/masks.json");
  auto runner = MakeRunner(model_dir, 512);
  ASSERT_TRUE(runner);
  const ModelConfig& config = runner->config();
  const int vocab = config.vocab_size, hidden = config.hidden_size;
  ImageProcessorOptions popts;
  popts.max_soft_tokens = ref["max_soft_tokens"];
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    SCOPED_TRACE("prompt " + std::to_string(p));
    const auto& pr = ref["prompts"][p];
    const std::vector<int32_t> ids = pr["ids"].get<std::vector<int32_t>>();
    const auto runs = ImageRuns(ids, config.image_token_id);
    ASSERT_EQ(runs.size(), pr["images"].size());

    // Vision encoder + projector against transformers' embed_vision output.
    auto feats = ReadNpyFloat32(model_dir + "/" + pr["image_features"].get<std::string>());
    ASSERT_TRUE(feats.ok()) << feats.error().message;
    GenerateOptions opts;
    size_t row = 0;
    double worst_feat = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::string file = root + "/images/" + pr["images"][i].get<std::string>();
      auto image = LoadImageFile(file);
      ASSERT_TRUE(image.ok()) << image.error().message;
      auto processed = PreprocessImage(*image, popts);
      ASSERT_TRUE(processed.ok()) << processed.error().message;
      ASSERT_EQ(processed->num_soft_tokens, runs[i].second - runs[i].first);
      auto soft = runner->EncodeImage(*processed);
      ASSERT_TRUE(soft.ok()) << soft.error().message;
      ASSERT_EQ(soft->size(), static_cast<size_t>(processed->num_soft_tokens) * hidden);
      for (int t = 0; t < processed->num_soft_tokens; ++t, ++row) {
        ASSERT_LT(row * hidden, feats->data.size());
        worst_feat = std::max(worst_feat, golden::RelativeL2(&(*soft)[static_cast<size_t>(t) * hidden],
                                                             &feats->data[row * hidden], hidden));
      }
      opts.images.push_back({runs[i].first, processed->num_soft_tokens, std::move(*soft)});
    }
    EXPECT_EQ(static_cast<int64_t>(row), feats->shape[0]);
    EXPECT_LE(worst_feat, kTolerance) << "image soft tokens";

    auto expected = ReadNpyFloat32(model_dir + "/" + pr["logits"].get<std::string>());
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    ASSERT_EQ(expected->shape, (std::vector<int64_t>{static_cast<int64_t>(ids.size()), vocab}));
    std::vector<float> whole;
    for (int chunk : {0, 7, 1}) {
      opts.max_tokens = chunk == 0 ? static_cast<int>(pr["greedy"].size()) : 0;
      opts.prefill_chunk = chunk;
      opts.prompt_logits = true;
      opts.ignore_eos = true;
      auto got = Generate(*runner, ids, opts);
      ASSERT_TRUE(got.ok()) << got.error().message;
      ASSERT_EQ(got->prompt_logits.size(), expected->data.size());
      double worst = 0;
      for (size_t t = 0; t < ids.size(); ++t) {
        worst = std::max(worst, golden::RelativeL2(&got->prompt_logits[t * vocab],
                                                   &expected->data[t * vocab], vocab));
      }
      EXPECT_LE(worst, kTolerance) << "chunk " << chunk;
      if (chunk == 0) {
        whole = got->prompt_logits;
        EXPECT_EQ(got->tokens, pr["greedy"].get<std::vector<int32_t>>()) << "greedy continuation";
        std::printf("  prompt %zu (%zu tokens, %zu images): soft tokens rel-L2 %.2e, logits worst "
                    "per-position rel-L2 %.2e\n", p, ids.size(), runs.size(), worst_feat, worst);
      } else {
        EXPECT_EQ(got->prompt_logits, whole) << "chunk " << chunk << " changed the logits";
      }
    }

    // The masks transformers applied: sliding layers (k <= q or same image) and k > q - window;
    // full layers causal.
    const int n = static_cast<int>(ids.size()), window = config.sliding_window;
    auto block = [&](int t) {
      for (size_t b = 0; b < runs.size(); ++b) {
        if (t >= runs[b].first && t < runs[b].second) return static_cast<int>(b);
      }
      return -1;
    };
    const auto& m = masks[p];
    ASSERT_TRUE(m.contains("sliding_attention") && m.contains("full_attention"));
    for (int q = 0; q < n; ++q) {
      const std::string srow = m["sliding_attention"][static_cast<size_t>(q)];
      const std::string frow = m["full_attention"][static_cast<size_t>(q)];
      for (int k = 0; k < n; ++k) {
        const bool same = block(q) >= 0 && block(q) == block(k);
        const bool sliding = (k <= q || same) && k > q - window;
        ASSERT_EQ(srow[static_cast<size_t>(k)] == '1', sliding) << "sliding q " << q << " k " << k;
        ASSERT_EQ(frow[static_cast<size_t>(k)] == '1', k <= q) << "full q " << q << " k " << k;
      }
    }
  }
}

TEST(VisionGolden, ImagePromptsMatchTransformers) { CheckImagePrompts(golden::VisionRoot()); }

// The bf16-conditioned set through the same checks (fp32 CPU runner: the foundation tolerance).
TEST(VisionGolden, ConditionedImagePromptsMatchTransformers) {
  const std::string root = golden::ConditionedVisionRoot();
  if (!golden::HasVisionModel(root)) GTEST_SKIP() << golden::NoConditionedVisionMessage(root);
  CheckImagePrompts(root);
}

// What the conditioned set promises, checked on its own files: profile bf16, required margins of
// at least 0.1, and at every position whose token is not the image token a top1 - top2 gap of the
// saved logits (recomputed here) and a recorded router margin at least those minima.
TEST(VisionGolden, ConditionedSetIsConditioned) {
  const std::string root = golden::ConditionedVisionRoot();
  if (!golden::HasVisionModel(root)) GTEST_SKIP() << golden::NoConditionedVisionMessage(root);
  const auto ref = golden::ReadJsonFile(root + "/model/reference.json");
  ASSERT_EQ(ref.value("profile", std::string()), "bf16");
  const double min_gap = ref["selection"]["min_prompt_logit_gap_required"].get<double>();
  const double min_router = ref["selection"]["min_router_margin_required"].get<double>();
  EXPECT_GE(min_gap, 0.1);
  EXPECT_GE(min_router, 0.1);
  const int32_t image_token = ref["image_token_id"].get<int32_t>();
  ASSERT_EQ(ref["prompts"].size(), 2u);
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    SCOPED_TRACE("prompt " + std::to_string(p));
    const auto& pr = ref["prompts"][p];
    EXPECT_EQ(pr["images"].size(), p + 1);
    const auto ids = pr["ids"].get<std::vector<int32_t>>();
    const auto certified = golden::CertifiedPositions(ref, pr);
    ASSERT_EQ(certified.size(), ids.size());
    const auto gaps = pr["logit_gaps"].get<std::vector<double>>();
    auto logits = ReadNpyFloat32(root + "/model/" + pr["logits"].get<std::string>());
    ASSERT_TRUE(logits.ok()) << logits.error().message;
    ASSERT_EQ(logits->shape.size(), 2u);
    ASSERT_EQ(logits->shape[0], static_cast<int64_t>(ids.size()));
    const size_t vocab = static_cast<size_t>(logits->shape[1]);
    size_t image_certified = 0, images = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      std::vector<float> row(logits->data.begin() + static_cast<std::ptrdiff_t>(t * vocab),
                             logits->data.begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
      std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
      const double gap = static_cast<double>(row[0]) - row[1];
      EXPECT_NEAR(gap, gaps[t], 1e-4) << "recorded logit gap at position " << t;
      if (ids[t] == image_token) {
        ++images;
        image_certified += certified[t];
        continue;
      }
      EXPECT_TRUE(certified[t]) << "position " << t << " (token " << ids[t] << "): gap " << gap
                                << ", router margin " << pr["router_margins"][t];
      EXPECT_GE(gap, min_gap) << "position " << t;
    }
    std::printf("  conditioned prompt %zu: %zu tokens, %zu image positions of which %zu meet the "
                "margins; min text gap %.3f, min text router margin %.3f\n", p, ids.size(), images,
                image_certified, pr["min_text_logit_gap"].get<double>(),
                pr["min_text_router_margin"].get<double>());
  }
}

// transformers' processor gives a 2000 × 40 picture at budget 70 a 3 × 177 patch grid (checked
// against preprocess.json here), more than the golden tower's 128-entry position table: its patch
// embedder's one_hot raises for such positions, so the encoder must refuse the image with the
// grid and the limit in the message instead of reading past the table.
TEST(VisionGolden, RejectsGridBeyondPositionTable) {
  const auto info = golden::ReadJsonFile(golden::VisionRoot() + "/preprocess.json");
  const nlohmann::json* c = nullptr;
  for (const auto& e : info["cases"]) {
    if (e["case"] == "rgb_2000x40_70") c = &e;
  }
  ASSERT_NE(c, nullptr) << "preprocess.json lacks rgb_2000x40_70";
  auto runner = MakeRunner(ModelDir(), 64);
  ASSERT_TRUE(runner);
  const int table = runner->config().vision->position_embedding_size;
  ASSERT_EQ(table, 128);
  auto rgb = LoadImageFile(golden::VisionRoot() + "/" + (*c)["input"].get<std::string>());
  ASSERT_TRUE(rgb.ok()) << rgb.error().message;
  ImageProcessorOptions o;
  o.max_soft_tokens = (*c)["max_soft_tokens"];
  auto img = PreprocessImage(*rgb, o);
  ASSERT_TRUE(img.ok()) << img.error().message;
  ASSERT_EQ(img->patches_h, (*c)["patch_grid_hw"][0].get<int>());
  ASSERT_EQ(img->patches_w, (*c)["patch_grid_hw"][1].get<int>());
  ASSERT_GT(img->patches_w, table);
  auto soft = runner->EncodeImage(*img);
  ASSERT_FALSE(soft.ok()) << "a 3 x 177 grid was encoded with a 128-entry position table";
  const std::string& msg = soft.error().message;
  EXPECT_NE(msg.find("177 × 3 patches"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position_embedding_size = 128"), std::string::npos) << msg;
  // At the boundary: 126 patches wide (the widest whole pooling windows inside the table) is
  // encoded, 129 is refused.
  for (int w : {table - table % 3, table - table % 3 + 3}) {
    SCOPED_TRACE(w);
    ProcessedImage edge = *img;
    edge.patches_w = w;
    edge.width = w * edge.patch_size;
    const int n = w * edge.patches_h;
    edge.num_soft_tokens = n / 9;
    edge.pixel_values.assign(static_cast<size_t>(n) * edge.patch_dim(), 0.5f);
    edge.position_x.clear();
    edge.position_y.clear();
    for (int t = 0; t < n; ++t) {
      edge.position_x.push_back(t % w);
      edge.position_y.push_back(t / w);
    }
    auto got = runner->EncodeImage(edge);
    EXPECT_EQ(got.ok(), w <= table) << (got.ok() ? "" : got.error().message);
  }
}

TEST(VisionGolden, ImageErrors) {
  auto runner = MakeRunner(ModelDir(), 64);
  ASSERT_TRUE(runner);
  ProcessedImage bad;
  bad.patches_h = bad.patches_w = 3;
  EXPECT_FALSE(runner->EncodeImage(bad).ok());  // no pixels
  // A span whose embeddings have the wrong size, and one outside the batch.
  Batch b;
  b.token_ids = {2, 500, 501, 502};
  BatchSequence s;
  s.num_tokens = 4;
  s.block_table = {0};
  b.sequences.push_back(s);
  b.logits_indices = {3};
  std::vector<float> emb(10);
  b.image_spans.push_back({2, 1, emb});
  std::vector<float> logits;
  auto st = runner->Forward(b, &logits);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("embedding values"), std::string::npos) << st.error().message;
  std::vector<float> ok_emb(static_cast<size_t>(runner->config().hidden_size));
  b.image_spans = {{3, 2, ok_emb}};
  EXPECT_FALSE(runner->Forward(b, &logits).ok());
}

}  // namespace
}  // namespace gs
