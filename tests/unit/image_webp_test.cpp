// WebP decoding (libwebp) against independent references made at test time with the Debian
// `webp` tools: a lossless WebP of a PNG decodes to the PNG's pixels (decoded by stb); a lossy
// WebP decodes to what `dwebp` writes; an animated WebP (gif2webp of the golden GIF) gives its
// first frame, equal to the GIF's first frame; the size limits apply to WebP too.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vision/image_decode.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string Golden(const std::string& name) {
  return std::string(GS_SOURCE_DIR) + "/tests/data/golden_vision/images/" + name;
}

class WebpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v cwebp >/dev/null && command -v dwebp >/dev/null && "
                    "command -v gif2webp >/dev/null") != 0) {
      GTEST_SKIP() << "SKIPPED: the Debian 'webp' tools (cwebp, dwebp, gif2webp) are not "
                      "installed (scripts/install_test_deps.sh / apt-get install webp)";
    }
    dir_ = fs::temp_directory_path() / ("gs_webp_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string Run(const std::string& cmd) {
    EXPECT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
    return cmd;
  }
  fs::path dir_;
};

RgbImage Decode(const std::string& path) {
  auto r = DecodeImage(ReadFile(path), path);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : RgbImage{};
}

// A binary PPM (P6, maxval 255) as dwebp -ppm writes it.
RgbImage ReadPpm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int w = 0, h = 0, maxval = 0;
  in >> magic >> w >> h >> maxval;
  in.get();
  RgbImage img;
  if (magic != "P6" || maxval != 255) return img;
  img.width = w;
  img.height = h;
  img.pixels.resize(static_cast<size_t>(w) * h * 3);
  in.read(reinterpret_cast<char*>(img.pixels.data()), static_cast<std::streamsize>(img.pixels.size()));
  return img;
}

void ExpectSame(const RgbImage& got, const RgbImage& want) {
  ASSERT_EQ(got.width, want.width);
  ASSERT_EQ(got.height, want.height);
  size_t diff = 0;
  for (size_t i = 0; i < got.pixels.size(); ++i) diff += got.pixels[i] != want.pixels[i];
  EXPECT_EQ(diff, 0u) << "of " << got.pixels.size() << " channel values";
}

TEST_F(WebpTest, LosslessEqualsSourcePng) {
  for (const char* name : {"rgb_640x480.png", "rgb_50x30.png", "gray_257x131.png"}) {
    SCOPED_TRACE(name);
    const std::string out = (dir_ / "lossless.webp").string();
    Run("cwebp -quiet -lossless -exact " + Golden(name) + " -o " + out);
    EXPECT_EQ(DetectImageFormat(ReadFile(out)), ImageFormat::kWebp);
    ExpectSame(Decode(out), Decode(Golden(name)));
  }
}

TEST_F(WebpTest, LossyEqualsDwebp) {
  const std::string webp = (dir_ / "lossy.webp").string(), ppm = (dir_ / "lossy.ppm").string();
  Run("cwebp -quiet -q 70 " + Golden("rgb_300x900.png") + " -o " + webp);
  Run("dwebp -quiet " + webp + " -ppm -o " + ppm);
  ExpectSame(Decode(webp), ReadPpm(ppm));
}

TEST_F(WebpTest, AnimatedGivesFirstFrame) {
  const std::string webp = (dir_ / "anim.webp").string();
  Run("gif2webp -quiet " + Golden("anim_80x60.gif") + " -o " + webp);
  ExpectSame(Decode(webp), Decode(Golden("anim_80x60.gif")));
}

TEST_F(WebpTest, LimitsApply) {
  const std::string out = (dir_ / "img.webp").string();
  Run("cwebp -quiet -lossless " + Golden("rgb_640x480.png") + " -o " + out);
  ImageLimits limits;
  limits.max_pixels = 640 * 480 - 1;
  auto r = DecodeImage(ReadFile(out), "img.webp", limits);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("the limit is"), std::string::npos) << r.error().message;
  std::vector<uint8_t> cut = ReadFile(out);
  cut.resize(cut.size() / 2);
  auto t = DecodeImage(cut, "img.webp");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("img.webp"), std::string::npos);
}

}  // namespace
}  // namespace gs
