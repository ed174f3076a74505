// Image decoding and Gemma4ImageProcessor-exact preprocessing against transformers 5.17
// (tests/data/golden_vision/preprocess.json): resize targets, token counts, and every pixel value
// of the processor's output; patch order; PIL's decodes of JPEG (EXIF orientations) and GIF.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "golden/vision_golden_util.h"
#include "vision/image_decode.h"
#include "vision/image_processor.h"

namespace gs {
namespace {

const float kInv255 = static_cast<float>(1.0 / 255.0);

RgbImage MustLoad(const std::string& path) {
  auto img = LoadImageFile(path);
  EXPECT_TRUE(img.ok()) << (img.ok() ? "" : img.error().message);
  return img.ok() ? *img : RgbImage{};
}

struct Diff {
  int max_abs = 0;      // in 1/255 steps
  double mean_abs = 0;  // idem
};

Diff CompareImages(const RgbImage& a, const RgbImage& b) {
  Diff d;
  if (a.width != b.width || a.height != b.height) return {255, 255};
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int e = std::abs(int{a.pixels[i]} - int{b.pixels[i]});
    d.max_abs = std::max(d.max_abs, e);
    sum += e;
  }
  d.mean_abs = a.pixels.empty() ? 0 : sum / static_cast<double>(a.pixels.size());
  return d;
}

// The reference's resized image vs our pixel_values, value by value (our float must be exactly
// float(u8) * float(1/255) of the reference's u8 for a 0 difference).
double MaxPixelDiff(const ProcessedImage& got, const RgbImage& want) {
  double worst = 0;
  const int p = got.patch_size, dim = got.patch_dim();
  for (int i = 0; i < got.num_patches(); ++i) {
    const int px = got.position_x[static_cast<size_t>(i)], py = got.position_y[static_cast<size_t>(i)];
    for (int r = 0; r < p; ++r) {
      for (int c = 0; c < p; ++c) {
        for (int ch = 0; ch < 3; ++ch) {
          const float ref = static_cast<float>(want.at(px * p + c, py * p + r, ch)) * kInv255;
          const float v = got.pixel_values[static_cast<size_t>(i) * dim + (r * p + c) * 3 + ch];
          worst = std::max(worst, static_cast<double>(std::abs(v - ref)));
        }
      }
    }
  }
  return worst;
}

TEST(VisionPreprocess, MatchesTransformersGemma4ImageProcessor) {
  const std::string root = golden::VisionRoot();
  const auto info = golden::ReadJsonFile(root + "/preprocess.json");
  ASSERT_EQ(info["auto_image_processor_class"], "Gemma4ImageProcessor");
  ASSERT_GE(info["cases"].size(), 10u);
  double worst_png = 0, worst_jpeg = 0;
  for (const auto& c : info["cases"]) {
    const std::string name = c["case"];
    SCOPED_TRACE(name);
    ASSERT_EQ(c["pixel_formula"], "uint8 * float32(1/255)");
    const RgbImage input = MustLoad(root + "/" + c["input"].get<std::string>());
    EXPECT_EQ(input.width, c["input_size_wh"][0].get<int>());
    EXPECT_EQ(input.height, c["input_size_wh"][1].get<int>());
    ImageProcessorOptions opts;
    opts.max_soft_tokens = c["max_soft_tokens"];
    auto got = PreprocessImage(input, opts);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->height, c["resized_hw"][0].get<int>());
    EXPECT_EQ(got->width, c["resized_hw"][1].get<int>());
    EXPECT_EQ(got->patches_h, c["patch_grid_hw"][0].get<int>());
    EXPECT_EQ(got->patches_w, c["patch_grid_hw"][1].get<int>());
    EXPECT_EQ(got->num_soft_tokens, c["num_soft_tokens"].get<int>());
    const RgbImage want = MustLoad(root + "/" + c["resized"].get<std::string>());
    ASSERT_EQ(want.height, got->height);
    ASSERT_EQ(want.width, got->width);
    const double diff = MaxPixelDiff(*got, want);
    const bool jpeg = c["input"].get<std::string>().ends_with(".jpg");
    (jpeg ? worst_jpeg : worst_png) = std::max(jpeg ? worst_jpeg : worst_png, diff);
    std::printf("  %-20s %4dx%-4d -> %4dx%-4d %4d tokens, max |pixel diff| %.6f (%.1f/255)\n",
                name.c_str(), input.width, input.height, got->width, got->height,
                got->num_soft_tokens, diff, diff * 255);
    if (jpeg) {
      // Another JPEG decoder (stb vs libjpeg-turbo): small differences only.
      EXPECT_LE(diff, 8.0 / 255) << "JPEG case";
    } else {
      EXPECT_EQ(diff, 0.0) << "lossless input must reproduce transformers bit for bit";
    }
    if (c.contains("pixels")) {
      const auto rows = golden::ReadNpyU8(root + "/" + c["pixels"].get<std::string>());
      const auto idx = c["pixels_patch_indices"].get<std::vector<int>>();
      ASSERT_EQ(rows.shape, (std::vector<int64_t>{static_cast<int64_t>(idx.size()), 768}));
      for (size_t r = 0; r < idx.size(); ++r) {
        for (int j = 0; j < 768; ++j) {
          const float ref = static_cast<float>(rows.data[r * 768 + j]) * kInv255;
          ASSERT_EQ(got->pixel_values[static_cast<size_t>(idx[r]) * 768 + j], ref)
              << "patch " << idx[r] << " element " << j;
        }
      }
    }
  }
  std::printf("  worst: lossless inputs %.1f/255, JPEG input %.1f/255\n", worst_png * 255,
              worst_jpeg * 255);
}

// Our JPEG decoder (stb_image) + EXIF orientation against PIL (libjpeg-turbo) + exif_transpose,
// and the first GIF frame against PIL.
TEST(VisionPreprocess, DecodersMatchPil) {
  const std::string root = golden::VisionRoot();
  for (int o = 1; o <= 8; ++o) {
    const std::string stem = "exif" + std::to_string(o) + "_40x24";
    SCOPED_TRACE(stem);
    const RgbImage got = MustLoad(root + "/images/" + stem + ".jpg");
    const RgbImage want = MustLoad(root + "/decoded/" + stem + ".png");
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    EXPECT_EQ(got.width, o >= 5 ? 24 : 40);
    const Diff d = CompareImages(got, want);
    std::printf("  %s: max |diff| %d/255, mean %.3f/255\n", stem.c_str(), d.max_abs, d.mean_abs);
    EXPECT_LE(d.max_abs, 12);
    EXPECT_LE(d.mean_abs, 1.0);
    // A wrong orientation would be far off: the unrotated decode must not match as well.
    if (o >= 2) {
      const RgbImage raw = ApplyExifOrientation(got, 1);
      RgbImage wrong = ApplyExifOrientation(raw, o == 2 ? 3 : 2);
      if (wrong.width == want.width) {
        EXPECT_GT(CompareImages(wrong, want).mean_abs, 5.0);
      }
    }
  }
  const RgbImage big = MustLoad(root + "/images/exif6_160x120.jpg");
  const RgbImage big_ref = MustLoad(root + "/decoded/exif6_160x120.png");
  const Diff db = CompareImages(big, big_ref);
  EXPECT_LE(db.max_abs, 12);
  EXPECT_LE(db.mean_abs, 1.0);
  std::printf("  exif6_160x120: max |diff| %d/255, mean %.3f/255\n", db.max_abs, db.mean_abs);
  const Diff dg = CompareImages(MustLoad(root + "/images/anim_80x60.gif"),
                                MustLoad(root + "/decoded/anim_80x60.png"));
  EXPECT_EQ(dg.max_abs, 0) << "GIF first frame";
}

// Examples of reference/gemma4-architecture.md §4.1 (budget 280) and the edge rules.
TEST(VisionPreprocess, ResizeTargets) {
  ImageProcessorOptions o;
  auto t = AspectRatioPreservingSize(224, 224, o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->height, 768);
  EXPECT_EQ(t->width, 768);
  t = AspectRatioPreservingSize(768, 1024, o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->height, 672);
  EXPECT_EQ(t->width, 912);
  t = AspectRatioPreservingSize(1080, 1920, o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->height, 576);
  EXPECT_EQ(t->width, 1056);
  o.max_soft_tokens = 100;
  EXPECT_FALSE(AspectRatioPreservingSize(100, 100, o).ok());
}

}  // namespace
}  // namespace gs
