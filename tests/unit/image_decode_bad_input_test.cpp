// Bad image input never crashes, hangs or reads out of bounds (this test also runs under
// ASan/UBSan): empty, unknown, truncated / huge WebP, truncated, corrupted, zero-sized and huge
// images give clear errors; seeded byte mutations of real PNG / JPEG / GIF files either fail
// cleanly or decode to a consistent image; the EXIF parser survives malformed segments;
// preprocessing rejects bad budgets and odd shapes cleanly.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "vision/image_decode.h"
#include "vision/image_processor.h"

namespace gs {
namespace {

std::vector<uint8_t> ReadFile(const std::string& rel) {
  std::ifstream in(std::string(GS_SOURCE_DIR) + "/" + rel, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string ErrorOf(const std::vector<uint8_t>& bytes) {
  auto r = DecodeImage(bytes, "test image");
  return r.ok() ? "" : r.error().message;
}

void ExpectConsistent(const Expected<RgbImage>& r) {
  if (!r.ok()) {
    EXPECT_NE(r.error().message.find("test image"), std::string::npos) << r.error().message;
    return;
  }
  EXPECT_GT(r->width, 0);
  EXPECT_GT(r->height, 0);
  EXPECT_EQ(r->pixels.size(), static_cast<size_t>(r->width) * r->height * 3);
}

// A PNG signature + IHDR chunk of the given size (stb does not check CRCs), then nothing.
std::vector<uint8_t> PngHeader(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {w, h}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  }
  for (uint8_t v : {8, 2, 0, 0, 0, 0, 0, 0, 0}) b.push_back(v);  // 8-bit RGB, CRC
  return b;
}

TEST(ImageDecodeBadInput, ClearErrors) {
  EXPECT_NE(ErrorOf({}).find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf({'h', 'e', 'l', 'l', 'o'}).find("unsupported"), std::string::npos);
  const std::vector<uint8_t> webp = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '};
  EXPECT_NE(ErrorOf(webp).find("corrupt or truncated"), std::string::npos);
  // A lossless (VP8L) header claiming 16384 x 16384: refused from the header.
  std::vector<uint8_t> huge_webp = {'R', 'I', 'F', 'F', 26, 0, 0, 0, 'W', 'E', 'B', 'P',
                                    'V', 'P', '8', 'L', 14, 0, 0, 0, 0x2f};
  const uint32_t bits = 16383u | (16383u << 14);  // width - 1, height - 1; no alpha, version 0
  for (int s = 0; s < 32; s += 8) huge_webp.push_back(static_cast<uint8_t>(bits >> s));
  huge_webp.resize(huge_webp.size() + 9, 0);
  EXPECT_NE(ErrorOf(huge_webp).find("the limit is"), std::string::npos) << ErrorOf(huge_webp);
  const std::vector<uint8_t> bmp = {'B', 'M', 0, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0};
  EXPECT_NE(ErrorOf(bmp).find("unsupported"), std::string::npos);
  // Zero-sized and huge images are refused from the header, before decoding any pixel.
  EXPECT_FALSE(ErrorOf(PngHeader(0, 10)).empty());
  EXPECT_FALSE(ErrorOf(PngHeader(10, 0)).empty());
  EXPECT_NE(ErrorOf(PngHeader(20000, 20000)).find("the limit is"), std::string::npos);
  EXPECT_FALSE(ErrorOf(PngHeader(100000, 10)).empty());
  EXPECT_FALSE(ErrorOf(PngHeader(0xffffffffu, 0xffffffffu)).empty());
  // Header fine, no pixel data.
  EXPECT_NE(ErrorOf(PngHeader(16, 16)).find("corrupt or truncated"), std::string::npos);
  // Too many bytes.
  std::vector<uint8_t> big(kMaxImageBytes + 1, 0);
  big[0] = 0x89;
  EXPECT_NE(ErrorOf(big).find("the limit is"), std::string::npos);
  // Missing file.
  auto missing = LoadImageFile("/nonexistent/image.png");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/image.png"), std::string::npos);
}

TEST(ImageDecodeBadInput, TruncatedFilesFailCleanly) {
  for (const char* f : {"tests/data/golden_vision/images/rgb_50x30.png",
                        "tests/data/golden_vision/images/exif6_40x24.jpg",
                        "tests/data/golden_vision/images/anim_80x60.gif"}) {
    SCOPED_TRACE(f);
    const std::vector<uint8_t> whole = ReadFile(f);
    ASSERT_GT(whole.size(), 100u);
    ASSERT_TRUE(DecodeImage(whole, "test image").ok());
    for (size_t n = 0; n < whole.size(); n += 1 + n / 16) {
      const std::vector<uint8_t> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
      ExpectConsistent(DecodeImage(cut, "test image"));
    }
  }
}

TEST(ImageDecodeBadInput, MutatedFilesNeverCrash) {
  std::mt19937 rng(1234);
  for (const char* f : {"tests/data/golden_vision/images/rgb_50x30.png",
                        "tests/data/golden_vision/images/exif6_40x24.jpg",
                        "tests/data/golden_vision/images/exif3_40x24.jpg",
                        "tests/data/golden_vision/images/anim_80x60.gif",
                        "tests/data/golden_vision/images/palette_120x90.png"}) {
    SCOPED_TRACE(f);
    const std::vector<uint8_t> whole = ReadFile(f);
    ASSERT_FALSE(whole.empty());
    for (int iter = 0; iter < 150; ++iter) {
      std::vector<uint8_t> b = whole;
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits; ++e) {
        // Mostly the first 200 bytes (headers, EXIF, palettes), sometimes anywhere.
        const size_t span = (rng() % 4 == 0) ? b.size() : std::min<size_t>(b.size(), 200);
        b[rng() % span] = static_cast<uint8_t>(rng());
      }
      ExpectConsistent(DecodeImage(b, "test image"));
      (void)JpegExifOrientation(b);
    }
  }
}

TEST(ImageDecodeBadInput, MalformedExifIsIgnored) {
  // SOI, APP1 "Exif\0\0" with a TIFF header whose IFD offset / entry count point past the end.
  auto jpeg_with_app1 = [](std::vector<uint8_t> tiff) {
    std::vector<uint8_t> b = {0xff, 0xd8, 0xff, 0xe1};
    const size_t len = tiff.size() + 8;
    b.push_back(static_cast<uint8_t>(len >> 8));
    b.push_back(static_cast<uint8_t>(len));
    for (char c : std::string("Exif\0\0", 6)) b.push_back(static_cast<uint8_t>(c));
    b.insert(b.end(), tiff.begin(), tiff.end());
    b.push_back(0xff);
    b.push_back(0xd9);
    return b;
  };
  EXPECT_EQ(JpegExifOrientation(jpeg_with_app1({'I', 'I', 42, 0, 0xff, 0xff, 0xff, 0x7f})), 1);
  EXPECT_EQ(JpegExifOrientation(jpeg_with_app1({'M', 'M', 0, 42, 0, 0, 0, 8, 0xff, 0xff})), 1);
  // A valid entry: orientation 6, little-endian.
  EXPECT_EQ(JpegExifOrientation(jpeg_with_app1({'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3,
                                                0, 1, 0, 0, 0, 6, 0, 0, 0})),
            6);
  // Out-of-range orientation value.
  EXPECT_EQ(JpegExifOrientation(jpeg_with_app1({'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3,
                                                0, 1, 0, 0, 0, 9, 0, 0, 0})),
            1);
  // Segment length past the end of the data.
  const std::vector<uint8_t> overlong = {0xff, 0xd8, 0xff, 0xe1, 0xff, 0xff, 'E'};
  EXPECT_EQ(JpegExifOrientation(overlong), 1);
}

TEST(ImageDecodeBadInput, PreprocessingRejectsBadParameters) {
  RgbImage img{2, 2, std::vector<uint8_t>(12, 128)};
  ImageProcessorOptions o;
  o.max_soft_tokens = 0;
  EXPECT_FALSE(PreprocessImage(img, o).ok());
  o.max_soft_tokens = 281;
  auto r = PreprocessImage(img, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("max_soft_tokens"), std::string::npos);
  o.max_soft_tokens = 70;
  RgbImage broken{4, 4, std::vector<uint8_t>(5)};
  EXPECT_FALSE(PreprocessImage(broken, o).ok());
  // Extreme aspect ratios stay within the patch budget (one side becomes 48 px).
  RgbImage line{4000, 1, std::vector<uint8_t>(12000, 7)};
  auto p = PreprocessImage(line, o);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->height, 48);
  EXPECT_LE(p->num_patches(), 70 * 9);
  EXPECT_EQ(p->num_soft_tokens * 9, p->num_patches());
}

}  // namespace
}  // namespace gs
