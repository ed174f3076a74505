// The CUDA vision encoder (runtime/cuda/vision_encoder.h) against the CPU encoder, which matches
// transformers to ~2e-6 (tests/golden/vision_golden_test.cpp), and image prompts on the CUDA
// runner against transformers' logits:
//  * VisionAttention: the attention kernel (two images in one launch, partial tiles, head_dim 72)
//    against an fp64 reference on the same bf16 inputs, output poisoned before the launch.
//  * GoldenImages: every golden image (budgets 70 and 140) on the golden_vision checkpoint, one at
//    a time and all in one batch, against the CPU encoder; the two prompts' soft tokens against
//    transformers' embed_vision output. The grids wider than the 128-entry position table
//    (rgb_2000x40 at budgets 70 and 140: 3 × 177 and 3 × 249 patches, as transformers'
//    processor makes them) must be refused.
//  * RealShapes: the real 27 × 1152 tower (configs/gemma-4-26B-A4B-it) with random weights on a
//    39 × 60 patch image (260 soft tokens), scratch poisoned before the compared pass.
//  * GoldenLogits / GoldenLogitsConditioned: the golden image prompts through Generate on the
//    CUDA runner (soft tokens from the CUDA encoder, bidirectional image spans on sliding layers)
//    against transformers' logits, for prefill chunks 0 (whole prompt), 7 and 1 (images stay
//    whole; the rest decode steps). On tests/data/golden_vision_bf16 (a model conditioned like a
//    trained one, make_golden_vision.py --profile bf16) the strict criterion of golden_cuda_test:
//    per position KL < 1e-3 and argmax agreement ≥ 99%, at the positions whose reference margins
//    make them robust to bf16 rounding (all text positions; see GoldenLogitsConditioned). On the
//    default random set only what a bf16 engine can meet there (median KL, argmax ≥ 95%).
// Bounds on the encoder are relative L2 over each image's soft tokens (and the worst row): the
// CUDA encoder rounds GEMM inputs, q/k/v and P to bf16 as a bf16 transformers model does; the
// CPU reference is fp32 throughout.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "golden/vision_golden_util.h"
#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "model/vision_weights.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_vision.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/vision_encoder.h"
#include "runtime/generate.h"
#include "runtime/sampling.h"
#include "util/npy.h"
#include "util/thread_pool.h"
#include "vision/image_decode.h"
#include "vision/image_processor.h"

namespace gs {
namespace {

using gputest::DeviceArray;

constexpr double kGoldenImageBound = 1.5e-2;  // whole-image relative L2, 2-layer golden tower
constexpr double kRealImageBound = 3e-2;      // whole-image relative L2, 27 layers
constexpr double kRowBound = 5e-2;            // worst soft token

// Where the data is when the binary runs on another machine (scripts/gpu/check.sh exports
// GS_GOLDEN_ROOT = <repo>/tests/data/golden and runs from the repository root): beside it, else
// the compiled-in source tree.
std::string VisionDir() {
  if (const char* env = std::getenv("GS_GOLDEN_ROOT")) {
    const std::string dir = std::string(env) + "/../golden_vision";
    if (std::filesystem::exists(dir)) return dir;
  }
  return golden::VisionRoot();
}

// The bf16-conditioned set: GS_GOLDEN_VISION_BF16_ROOT, else beside GS_GOLDEN_ROOT, else the
// source tree.
std::string ConditionedVisionDir() {
  if (std::getenv("GS_GOLDEN_VISION_BF16_ROOT") == nullptr) {
    if (const char* env = std::getenv("GS_GOLDEN_ROOT")) {
      const std::string dir = std::string(env) + "/../golden_vision_bf16";
      if (std::filesystem::exists(dir)) return dir;
    }
  }
  return golden::ConditionedVisionRoot();
}

std::string RealConfigDir() {
  const std::string rel = "configs/gemma-4-26B-A4B-it";
  return std::filesystem::exists(rel + "/config.json") ? rel
                                                       : std::string(GS_SOURCE_DIR) + "/" + rel;
}

std::string GoldenModelDir() { return VisionDir() + "/model/bf16"; }

struct Errors {
  double image = 0, worst_row = 0;
};

Errors Compare(const std::vector<float>& got, const std::vector<float>& want, size_t width) {
  Errors e;
  e.image = gputest::RelL2(got.data(), want.data(), want.size());
  e.worst_row = gputest::WorstRowRelL2(got, want, width);
  if (got.size() != want.size()) e.image = e.worst_row = 1e30;
  return e;
}

// ---- attention kernel ----

TEST(VisionCuda, VisionAttention) {
  GS_REQUIRE_GPU();
  const int heads = 16, d = 72, dp = cuda::VisionPaddedHeadDim(d);
  const std::vector<int> lens = {300, 77};
  const int N = 377;
  std::mt19937_64 rng(5);
  const size_t total = static_cast<size_t>(N) * heads * dp;
  std::vector<float> q(total), k(total), v(total);
  std::normal_distribution<float> qk(0.0f, 0.35f), vd(0.0f, 1.0f);
  for (size_t r = 0; r < static_cast<size_t>(N) * heads; ++r) {
    for (int c = 0; c < d; ++c) {
      // Scores of a few units, as after the q/k norms (scale 1.0).
      q[r * dp + c] = RoundToBf16(qk(rng));
      k[r * dp + c] = RoundToBf16(qk(rng));
      v[r * dp + c] = RoundToBf16(vd(rng));
    }
  }
  std::vector<int> tiles;
  int base = 0;
  const int rows = cuda::VisionAttentionTileRows();
  for (int n : lens) {
    for (int q0 = 0; q0 < n; q0 += rows) tiles.insert(tiles.end(), {base, n, q0, std::min(rows, n - q0)});
    base += n;
  }
  DeviceArray<__nv_bfloat16> dq, dk, dv, dout(static_cast<size_t>(N) * heads * d);
  dq.Upload(gputest::ToBf16(q));
  dk.Upload(gputest::ToBf16(k));
  dv.Upload(gputest::ToBf16(v));
  DeviceArray<int> dt;
  dt.Upload(tiles);
  dout.Poison();
  GS_ASSERT_OK(cuda::LaunchVisionAttention(dt.get(), static_cast<int>(tiles.size() / 4), dq.get(),
                                           dk.get(), dv.get(), heads, d, dout.get(), nullptr));
  const std::vector<float> got = gputest::FromBf16(dout.Download());
  std::vector<float> want(got.size());
  base = 0;
  for (int n : lens) {
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < heads; ++h) {
        const float* qi = &q[(static_cast<size_t>(base + i) * heads + h) * dp];
        std::vector<double> s(static_cast<size_t>(n));
        double mx = -1e300, sum = 0;
        for (int j = 0; j < n; ++j) {
          const float* kj = &k[(static_cast<size_t>(base + j) * heads + h) * dp];
          double acc = 0;
          for (int c = 0; c < d; ++c) acc += static_cast<double>(qi[c]) * kj[c];
          s[static_cast<size_t>(j)] = acc;
          mx = std::max(mx, acc);
        }
        for (double& x : s) sum += x = std::exp(x - mx);
        for (int c = 0; c < d; ++c) {
          double o = 0;
          for (int j = 0; j < n; ++j) {
            o += s[static_cast<size_t>(j)] * v[(static_cast<size_t>(base + j) * heads + h) * dp + c];
          }
          want[(static_cast<size_t>(base + i) * heads + h) * d + c] = static_cast<float>(o / sum);
        }
      }
    }
    base += n;
  }
  const double err = gputest::WorstRowRelL2(got, want, d);
  std::printf("VISION attention kernel: worst (patch, head) rel-L2 %.2e\n", err);
  // bf16 P and a bf16 output: a few 2^-9 roundings.
  EXPECT_LT(err, 1e-2);
}

// ---- golden checkpoint ----

struct GoldenModel {
  ModelConfig config;
  Gemma4Weights weights;
  VisionWeights vision;
};

std::unique_ptr<GoldenModel> LoadGolden(const std::string& model_dir = GoldenModelDir()) {
  auto config = LoadModelConfig(model_dir);
  EXPECT_TRUE(config.ok()) << config.error().message;
  if (!config.ok()) return nullptr;
  auto weights = LoadGemma4Weights(*config, model_dir);
  EXPECT_TRUE(weights.ok()) << weights.error().message;
  if (!weights.ok()) return nullptr;
  auto vision = BindVisionWeights(*config, weights->store);
  EXPECT_TRUE(vision.ok()) << vision.error().message;
  if (!vision.ok()) return nullptr;
  return std::unique_ptr<GoldenModel>(
      new GoldenModel{*config, std::move(*weights), std::move(*vision)});
}

std::vector<std::string> GoldenImageFiles() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(VisionDir() + "/images")) {
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(VisionCuda, GoldenImages) {
  GS_REQUIRE_GPU();
  auto m = LoadGolden();
  ASSERT_TRUE(m);
  auto enc = cuda::VisionEncoder::Upload(m->config, m->vision);
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  ThreadPool pool(0);
  const size_t width = static_cast<size_t>(m->config.hidden_size);
  const int table = m->config.vision->position_embedding_size;
  std::vector<ProcessedImage> images;
  std::vector<std::string> names;
  int refused = 0;
  for (const std::string& file : GoldenImageFiles()) {
    auto rgb = LoadImageFile(file);
    ASSERT_TRUE(rgb.ok()) << file << ": " << rgb.error().message;
    for (int budget : {70, 140}) {
      ImageProcessorOptions o;
      o.max_soft_tokens = budget;
      auto p = PreprocessImage(*rgb, o);
      ASSERT_TRUE(p.ok()) << p.error().message;
      const std::string name = std::filesystem::path(file).filename().string() + "@" +
                               std::to_string(budget);
      if (p->patches_w > table || p->patches_h > table) {
        // transformers' processor makes such grids (rgb_2000x40@70: 3 × 177) and its patch
        // embedder's one_hot then raises: both encoders refuse the image, alone or in a batch
        // with a fitting one, naming its place in the batch and the table's size.
        SCOPED_TRACE(name);
        ++refused;
        EXPECT_EQ(name.rfind("rgb_2000x40.png@", 0), 0u) << "only the 2000 × 40 image is that wide";
        const std::string limit = "position_embedding_size = " + std::to_string(table);
        auto cpu_got = cpu::EncodeImage(m->config, m->vision, *p, pool);
        ASSERT_FALSE(cpu_got.ok());
        EXPECT_NE(cpu_got.error().message.find(limit), std::string::npos)
            << cpu_got.error().message;
        auto alone = (*enc)->Encode({&*p});
        ASSERT_FALSE(alone.ok());
        EXPECT_NE(alone.error().message.find(limit), std::string::npos) << alone.error().message;
        ASSERT_FALSE(images.empty());
        const ProcessedImage* fitting = &images.front();
        auto mixed = (*enc)->Encode({fitting, &*p});
        ASSERT_FALSE(mixed.ok());
        EXPECT_NE(mixed.error().message.find("image 1 of 2"), std::string::npos)
            << mixed.error().message;
        std::printf("VISION golden %-24s %d x %d patches: refused (%s)\n", name.c_str(),
                    p->patches_w, p->patches_h, alone.error().message.c_str());
        continue;
      }
      images.push_back(std::move(*p));
      names.push_back(name);
    }
  }
  EXPECT_EQ(refused, 2) << "expected rgb_2000x40 at both budgets (3 × 177 and 3 × 249 patches) "
                           "beyond the position table";
  std::vector<const ProcessedImage*> all;
  for (const ProcessedImage& p : images) all.push_back(&p);
  auto batched = (*enc)->Encode(all);
  ASSERT_TRUE(batched.ok()) << batched.error().message;
  double worst_single = 0, worst_batched = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    SCOPED_TRACE(names[i]);
    auto want = cpu::EncodeImage(m->config, m->vision, images[i], pool);
    ASSERT_TRUE(want.ok()) << want.error().message;
    GS_ASSERT_OK((*enc)->PoisonScratch());
    auto single = (*enc)->Encode({&images[i]});
    ASSERT_TRUE(single.ok()) << single.error().message;
    const Errors es = Compare((*single)[0], *want, width);
    const Errors eb = Compare((*batched)[i], *want, width);
    std::printf("VISION golden %-24s %3d soft tokens: rel-L2 %.2e (worst token %.2e), batched "
                "%.2e\n", names[i].c_str(), images[i].num_soft_tokens, es.image, es.worst_row,
                eb.image);
    EXPECT_LT(es.image, kGoldenImageBound);
    EXPECT_LT(es.worst_row, kRowBound);
    EXPECT_LT(eb.image, kGoldenImageBound);
    EXPECT_LT(eb.worst_row, kRowBound);
    worst_single = std::max(worst_single, es.image);
    worst_batched = std::max(worst_batched, eb.image);
  }
  std::printf("VISION golden: %zu images, worst rel-L2 vs CPU %.2e single, %.2e batched\n",
              images.size(), worst_single, worst_batched);

  // transformers' embed_vision output of the two prompts (images in prompt order).
  const auto ref = golden::ReadJsonFile(VisionDir() + "/model/reference.json");
  ImageProcessorOptions popts;
  popts.max_soft_tokens = ref["max_soft_tokens"];
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    const auto& pr = ref["prompts"][p];
    auto feats = ReadNpyFloat32(VisionDir() + "/model/" +
                                pr["image_features"].get<std::string>());
    ASSERT_TRUE(feats.ok()) << feats.error().message;
    std::vector<float> got;
    for (const auto& name : pr["images"]) {
      auto rgb = LoadImageFile(VisionDir() + "/images/" + name.get<std::string>());
      ASSERT_TRUE(rgb.ok());
      auto img = PreprocessImage(*rgb, popts);
      ASSERT_TRUE(img.ok());
      auto soft = (*enc)->Encode({&*img});
      ASSERT_TRUE(soft.ok()) << soft.error().message;
      got.insert(got.end(), (*soft)[0].begin(), (*soft)[0].end());
    }
    const Errors e = Compare(got, feats->data, width);
    std::printf("VISION golden prompt %zu vs transformers: rel-L2 %.2e (worst token %.2e)\n", p,
                e.image, e.worst_row);
    EXPECT_LT(e.image, kGoldenImageBound);
    EXPECT_LT(e.worst_row, kRowBound);
  }
}

// ---- the real tower with random weights ----

// Random bf16 matrices owned here; VisionWeights views them as a checkpoint's would be.
//
// The tower is conditioned the way a trained one is, or the comparison means nothing: with unit
// q/k norm weights the scale-1.0 attention logits of random unit-RMS heads have σ ≈ √72 ≈ 8.5
// (near-argmax softmax), and unit post-norms make every branch as large as the residual stream,
// so 27 layers amplify any rounding difference until the output decorrelates. Measured on the CPU
// encoder alone (fp32, 12 × 9 patches): flipping the last bit of half of the bf16 weights moves
// the output by relative L2 0.96 with unit norms, and by 7.3e-3 with q/k norms 0.35 (logit σ ≈ 1)
// and post-norms 0.1 (branch/stream ≈ 0.1, as in the bf16-conditioned golden set).
constexpr float kQkNorm = 0.35f;
constexpr float kPostNorm = 0.1f;

class RandomTower {
 public:
  RandomTower(const ModelConfig& config, uint64_t seed, ThreadPool& pool) : pool_(pool) {
    const VisionConfig& vc = *config.vision;
    const int64_t H = vc.hidden_size, qd = int64_t{vc.num_heads} * vc.head_dim;
    const int64_t I = vc.intermediate_size, P = vc.position_embedding_size;
    w.patch_proj = Linear(H, int64_t{vc.patch_size} * vc.patch_size * 3, seed + 1);
    w.position_table = Vector(2 * P * H, 0.0f, 0.3f, seed + 2);
    for (int l = 0; l < vc.num_layers; ++l) {
      const uint64_t s = seed + 100 * static_cast<uint64_t>(l + 1);
      VisionLayerWeights L;
      L.q = Linear(qd, H, s + 1);
      L.k = Linear(qd, H, s + 2);
      L.v = Linear(qd, H, s + 3);
      L.o = Linear(H, qd, s + 4);
      L.gate = Linear(I, H, s + 5);
      L.up = Linear(I, H, s + 6);
      L.down = Linear(H, I, s + 7);
      L.q_norm = Vector(vc.head_dim, kQkNorm, 0.2f * kQkNorm, s + 8);
      L.k_norm = Vector(vc.head_dim, kQkNorm, 0.2f * kQkNorm, s + 9);
      L.input_norm = Vector(H, 1.0f, 0.2f, s + 10);
      L.post_attn_norm = Vector(H, kPostNorm, 0.2f * kPostNorm, s + 11);
      L.pre_ffn_norm = Vector(H, 1.0f, 0.2f, s + 12);
      L.post_ffn_norm = Vector(H, kPostNorm, 0.2f * kPostNorm, s + 13);
      w.layers.push_back(std::move(L));
    }
    // Standardisation that matters but does not swamp the signal (pooled values are ~1e2).
    w.std_bias = Vector(H, 0.0f, 50.0f, seed + 3);
    w.std_scale = Vector(H, 0.01f, 0.005f, seed + 4);
    w.projector = Linear(config.hidden_size, H, seed + 5);
  }
  VisionWeights w;

 private:
  static float Uniform(uint64_t seed, uint64_t i) {  // splitmix64 → [-1, 1)
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * 0x1p-23f - 1.0f;
  }
  QuantizedLinear Linear(int64_t rows, int64_t cols, uint64_t seed) {
    auto data = std::make_unique<std::vector<uint16_t>>(static_cast<size_t>(rows * cols));
    const float scale = std::sqrt(3.0f / static_cast<float>(cols));  // stddev 1/√cols
    uint16_t* out = data->data();
    pool_.ParallelFor(rows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin * cols; i < end * cols; ++i) {
        out[i] = FloatToBf16(Uniform(seed, static_cast<uint64_t>(i)) * scale);
      }
    });
    QuantizedLinear q;
    q.name = "random." + std::to_string(seed);
    q.format = WeightFormat::kBf16;
    q.rows = rows;
    q.cols = cols;
    q.data = reinterpret_cast<const uint8_t*>(data->data());
    store_.push_back(std::move(data));
    return q;
  }
  static std::vector<float> Vector(int64_t n, float mean, float spread, uint64_t seed) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      v[static_cast<size_t>(i)] = RoundToBf16(mean + spread * Uniform(seed, static_cast<uint64_t>(i)));
    }
    return v;
  }
  ThreadPool& pool_;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> store_;
};

// A 39 × 60 patch grid (624 × 960 px: what a 320 × 480 picture becomes at budget 280) of random
// pixels k/255, raster positions.
ProcessedImage RandomImage(int patches_h, int patches_w, uint64_t seed) {
  ProcessedImage img;
  img.patches_h = patches_h;
  img.patches_w = patches_w;
  img.height = patches_h * 16;
  img.width = patches_w * 16;
  img.num_soft_tokens = patches_h * patches_w / 9;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  img.pixel_values.resize(static_cast<size_t>(img.num_patches()) * img.patch_dim());
  for (float& p : img.pixel_values) p = static_cast<float>(byte(rng)) * (1.0f / 255.0f);
  for (int t = 0; t < img.num_patches(); ++t) {
    img.position_x.push_back(t % patches_w);
    img.position_y.push_back(t / patches_w);
  }
  return img;
}

TEST(VisionCuda, RealShapes) {
  GS_REQUIRE_GPU();
  auto config = LoadModelConfig(RealConfigDir());
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_TRUE(config->vision.has_value());
  ASSERT_EQ(config->vision->num_layers, 27);
  ASSERT_EQ(config->vision->hidden_size, 1152);
  ThreadPool pool(0);
  const auto t0 = std::chrono::steady_clock::now();
  RandomTower tower(*config, 11, pool);
  auto enc = cuda::VisionEncoder::Upload(*config, tower.w);
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  const ProcessedImage big = RandomImage(39, 60, 1), small = RandomImage(12, 9, 2);
  // A first pass allocates the scratch; the compared pass runs on poisoned buffers.
  ASSERT_TRUE((*enc)->Encode({&big, &small}).ok());
  GS_ASSERT_OK((*enc)->PoisonScratch());
  auto got = (*enc)->Encode({&big, &small});
  ASSERT_TRUE(got.ok()) << got.error().message;
  GS_ASSERT_OK((*enc)->PoisonScratch());
  auto alone = (*enc)->Encode({&big});
  ASSERT_TRUE(alone.ok()) << alone.error().message;
  const auto t1 = std::chrono::steady_clock::now();
  auto want = cpu::EncodeImage(*config, tower.w, big, pool);
  ASSERT_TRUE(want.ok()) << want.error().message;
  auto want_small = cpu::EncodeImage(*config, tower.w, small, pool);
  ASSERT_TRUE(want_small.ok()) << want_small.error().message;
  const auto t2 = std::chrono::steady_clock::now();
  const size_t width = static_cast<size_t>(config->hidden_size);
  const Errors e = Compare((*got)[0], *want, width), es = Compare((*got)[1], *want_small, width);
  const Errors ea = Compare((*alone)[0], *want, width);
  std::printf("VISION real 27x1152, 2340 patches (260 soft tokens): rel-L2 %.2e (worst token "
              "%.2e), alone %.2e; 108 patches (12 soft tokens, same batch) %.2e (worst %.2e); "
              "setup + GPU %.1f s, CPU reference %.1f s\n",
              e.image, e.worst_row, ea.image, es.image, es.worst_row,
              std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());
  EXPECT_LT(e.image, kRealImageBound);
  EXPECT_LT(e.worst_row, kRowBound);
  EXPECT_LT(ea.image, kRealImageBound);
  EXPECT_LT(es.image, kRealImageBound);
  EXPECT_LT(es.worst_row, kRowBound);
}

// ---- image prompts on the CUDA runner ----

// KL(reference ‖ ours) and argmax agreement over a set of positions.
struct KlStats {
  size_t count = 0, worst_at = 0, over = 0, same = 0;
  double worst = 0, median = 0;
  double agree() const { return count == 0 ? 1.0 : static_cast<double>(same) / count; }
};

KlStats Summarize(const std::vector<double>& kls, const std::vector<bool>& argmax_same,
                  const std::vector<bool>& include) {
  KlStats s;
  std::vector<double> picked;
  for (size_t t = 0; t < kls.size(); ++t) {
    if (!include[t]) continue;
    if (picked.empty() || kls[t] > s.worst) {
      s.worst = kls[t];
      s.worst_at = t;
    }
    picked.push_back(kls[t]);
    s.over += kls[t] >= 1e-3;
    s.same += argmax_same[t];
  }
  s.count = picked.size();
  if (!picked.empty()) {
    std::sort(picked.begin(), picked.end());
    s.median = picked[picked.size() / 2];
  }
  return s;
}

std::string Describe(const KlStats& s) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "worst KL %.2e at position %zu, median %.2e, positions >= 1e-3: "
                "%zu/%zu, argmax agreement %.3f", s.worst, s.worst_at, s.median, s.over, s.count,
                s.agree());
  return buf;
}

// Every prompt of the set under `dir` through Generate at prefill chunks 0, 7 and 1.
//  * conditioned == false (tests/data/golden_vision, random model): every line is printed, and
//    what a bf16 engine can meet there is asserted: median KL < 1e-3 and argmax agreement ≥ 95%.
//    Its model is a tiny random net whose branches are as large as the residual stream and whose
//    top1 - top2 logit gaps and router margins go down to ~1e-3 (docs/golden-precision.md): bf16
//    rounding alone (the CPU bf16 emulation reproduces the GPU there) pushes a few positions past
//    KL 1e-3 and flips argmaxes with tiny gaps, while the median stays ~1.2e-4 on the H100.
//  * conditioned == true (tests/data/golden_vision_bf16): the strict criterion, KL < 1e-3 at every
//    certified position and argmax agreement ≥ 99% over them. Certified = top1 - top2 gap ≥ 0.1
//    and every router margin ≥ 0.1 in transformers' run (golden::CertifiedPositions): the
//    generator guarantees it at every position whose token is not the image token (those it
//    chooses, or rejects the model); image-token positions cannot be chosen (~60 per image, each
//    failing a margin with probability ~0.5 on a random model), so the uncertified ones, whose
//    logits are never sampled, are printed and held to the median bound only.
void RunGoldenLogits(const std::string& dir, bool conditioned) {
  auto m = LoadGolden(dir + "/model/bf16");
  ASSERT_TRUE(m);
  auto runner = CreateCudaRunner(m->config, m->weights, KvSpecForSingleSequence(512, 4));
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  ASSERT_TRUE((*runner)->supports_vision());
  const auto ref = golden::ReadJsonFile(dir + "/model/reference.json");
  ImageProcessorOptions popts;
  popts.max_soft_tokens = ref["max_soft_tokens"];
  const int vocab = m->config.vocab_size;
  const char* tag = conditioned ? "GOLDEN vision [bf16-conditioned]" : "GOLDEN vision";
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    const auto& pr = ref["prompts"][p];
    const std::vector<int32_t> ids = pr["ids"].get<std::vector<int32_t>>();
    std::vector<bool> certified(ids.size(), true);
    if (conditioned) {
      certified = golden::CertifiedPositions(ref, pr);
      ASSERT_EQ(certified.size(), ids.size()) << "prompt " << p << ": reference.json has no "
                                                 "per-position logit_gaps / router_margins";
      for (size_t t = 0; t < ids.size(); ++t) {
        ASSERT_TRUE(certified[t] || ids[t] == m->config.image_token_id)
            << "prompt " << p << " position " << t << ": a text position below the margins";
      }
    }
    GenerateOptions opts;
    size_t image = 0;
    for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
      if (ids[static_cast<size_t>(i)] != m->config.image_token_id ||
          (i > 0 && ids[static_cast<size_t>(i) - 1] == m->config.image_token_id)) {
        continue;
      }
      ASSERT_LT(image, pr["images"].size());
      auto rgb = LoadImageFile(dir + "/images/" + pr["images"][image++].get<std::string>());
      ASSERT_TRUE(rgb.ok());
      auto img = PreprocessImage(*rgb, popts);
      ASSERT_TRUE(img.ok());
      auto soft = (*runner)->EncodeImage(*img);
      ASSERT_TRUE(soft.ok()) << soft.error().message;
      opts.images.push_back({i, img->num_soft_tokens, std::move(*soft)});
    }
    ASSERT_EQ(image, pr["images"].size());
    auto expected = ReadNpyFloat32(dir + "/model/" + pr["logits"].get<std::string>());
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    for (int chunk : {0, 7, 1}) {
      opts.max_tokens = 0;
      opts.prefill_chunk = chunk;
      opts.prompt_logits = true;
      auto got = Generate(**runner, ids, opts);
      ASSERT_TRUE(got.ok()) << got.error().message;
      ASSERT_EQ(got->prompt_logits.size(), expected->data.size());
      std::vector<double> kls;
      std::vector<bool> same;
      for (size_t t = 0; t < ids.size(); ++t) {
        const float* r = &expected->data[t * vocab];
        const float* o = &got->prompt_logits[t * vocab];
        double kl = gputest::KlDivergence(r, o, vocab);
        if (!(kl == kl)) kl = 1e30;
        kls.push_back(kl);
        same.push_back(Argmax({r, static_cast<size_t>(vocab)}) ==
                       Argmax({o, static_cast<size_t>(vocab)}));
      }
      const KlStats all = Summarize(kls, same, std::vector<bool>(ids.size(), true));
      const KlStats strict = Summarize(kls, same, certified);
      std::printf("%s p%zu (%zu tokens, %zu images) chunk %d: %s\n", tag, p, ids.size(),
                  pr["images"].size(), chunk, Describe(all).c_str());
      if (conditioned) {
        std::printf("%s p%zu chunk %d, certified positions only: %s\n", tag, p, chunk,
                    Describe(strict).c_str());
        EXPECT_LT(strict.worst, 1e-3) << "prompt " << p << " chunk " << chunk << " position "
                                      << strict.worst_at;
        EXPECT_GE(strict.agree(), 0.99) << "prompt " << p << " chunk " << chunk;
      } else {
        EXPECT_GE(all.agree(), 0.95) << "prompt " << p << " chunk " << chunk;
      }
      EXPECT_LT(all.median, 1e-3) << "prompt " << p << " chunk " << chunk;
    }
  }
}

TEST(VisionCuda, GoldenLogits) {
  GS_REQUIRE_GPU();
  RunGoldenLogits(VisionDir(), /*conditioned=*/false);
}

TEST(VisionCuda, GoldenLogitsConditioned) {
  GS_REQUIRE_GPU();
  const std::string dir = ConditionedVisionDir();
  if (!golden::HasVisionModel(dir)) GTEST_SKIP() << golden::NoConditionedVisionMessage(dir);
  RunGoldenLogits(dir, /*conditioned=*/true);
}

}  // namespace
}  // namespace gs
