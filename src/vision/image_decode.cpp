#include "vision/image_decode.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>

#include <webp/decode.h>
#include <webp/demux.h>

#include "vision/stb_image_impl.h"

namespace gs {
namespace {

bool StartsWith(std::span<const uint8_t> b, size_t offset, const char* magic, size_t n) {
  return b.size() >= offset + n && std::memcmp(b.data() + offset, magic, n) == 0;
}

// Big- or little-endian reads inside a bounded buffer (the TIFF block of an EXIF segment).
struct TiffReader {
  std::span<const uint8_t> b;
  bool little = false;

  bool U16(size_t at, uint32_t* v) const {
    if (at + 2 > b.size()) return false;
    *v = little ? (b[at] | (b[at + 1] << 8)) : ((b[at] << 8) | b[at + 1]);
    return true;
  }
  bool U32(size_t at, uint32_t* v) const {
    uint32_t hi = 0, lo = 0;
    if (!U16(at, little ? &lo : &hi) || !U16(at + 2, little ? &hi : &lo)) return false;
    *v = (hi << 16) | lo;
    return true;
  }
};

// Orientation from the TIFF block of an APP1 "Exif\0\0" segment: IFD0, tag 0x0112, SHORT.
int OrientationFromTiff(std::span<const uint8_t> tiff) {
  TiffReader r{tiff};
  if (StartsWith(tiff, 0, "II", 2)) {
    r.little = true;
  } else if (!StartsWith(tiff, 0, "MM", 2)) {
    return 1;
  }
  uint32_t magic = 0, ifd = 0, count = 0;
  if (!r.U16(2, &magic) || magic != 42 || !r.U32(4, &ifd) || !r.U16(ifd, &count)) return 1;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = static_cast<size_t>(ifd) + 2 + 12 * static_cast<size_t>(i);
    uint32_t tag = 0, type = 0, value = 0;
    if (!r.U16(e, &tag) || !r.U16(e + 2, &type)) return 1;
    if (tag != 0x0112) continue;
    if (type != 3 || !r.U16(e + 8, &value) || value < 1 || value > 8) return 1;
    return static_cast<int>(value);
  }
  return 1;
}

struct Dimensions {
  int64_t width = -1, height = -1;  // -1: not found in the header
};

// Width and height as the header declares them, read without stb so that an oversized image
// gets a clear error (stb reports only "unknown image type" once every format test failed).
Dimensions HeaderDimensions(std::span<const uint8_t> b, ImageFormat format) {
  auto be = [&](size_t at, int n) {
    int64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | b[at + static_cast<size_t>(i)];
    return v;
  };
  if (format == ImageFormat::kPng && b.size() >= 24 && StartsWith(b, 12, "IHDR", 4)) {
    return {be(16, 4), be(20, 4)};
  }
  if (format == ImageFormat::kGif && b.size() >= 10) {
    return {b[6] | (b[7] << 8), b[8] | (b[9] << 8)};
  }
  if (format == ImageFormat::kJpeg) {
    size_t i = 2;
    while (i + 9 <= b.size() && b[i] == 0xff) {
      const uint8_t m = b[i + 1];
      if (m == 0xff) {
        ++i;
        continue;
      }
      const bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
      if (sof) return {be(i + 7, 2), be(i + 5, 2)};
      if (m == 0xda || m == 0xd9) break;
      i += 2 + static_cast<size_t>(be(i + 2, 2));
    }
  }
  return {};
}

// stb_image 2.27 (Debian 12) builds a JPEG Huffman table without checking that its 16 code counts
// sum to at most 256: a crafted DHT segment writes past the table (found by this module's fuzz
// test under ASan). Walk the markers at least everywhere stb may find one (padding is skipped
// byte by byte; after a scan, resync at the first 0xFF followed by a non-zero, non-RST byte) and
// refuse any DHT table with more than 256 codes.
bool JpegHuffmanTablesSafe(std::span<const uint8_t> b) {
  size_t i = 2;
  while (i + 1 < b.size()) {
    if (b[i] != 0xff) {  // stb skips padding between header segments byte by byte
      ++i;
      continue;
    }
    while (i + 1 < b.size() && b[i + 1] == 0xff) ++i;  // fill bytes
    if (i + 1 >= b.size()) return true;
    const uint8_t m = b[i + 1];
    if (m == 0xd9) return true;
    if ((m >= 0xd0 && m <= 0xd7) || m == 0x01 || m == 0x00) {
      i += 2;
      continue;
    }
    if (i + 3 >= b.size()) return true;
    const size_t len = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    if (m == 0xc4) {
      size_t pos = i + 4;
      for (int64_t left = static_cast<int64_t>(len) - 2; left > 0;) {
        int n = 0;
        for (size_t c = 1; c <= 16; ++c) n += pos + c < b.size() ? b[pos + c] : 0;
        if (n > 256) return false;
        pos += 17 + static_cast<size_t>(n);
        left -= 17 + n;
      }
    }
    i += 2 + len;
    if (m == 0xda) {  // entropy-coded data up to the next real marker
      while (i + 1 < b.size()) {
        if (b[i] == 0xff) {
          size_t j = i + 1;
          while (j < b.size() && b[j] == 0xff) ++j;
          if (j < b.size() && b[j] != 0x00 && !(b[j] >= 0xd0 && b[j] <= 0xd7)) {
            i = j - 1;
            break;
          }
          i = j;
        }
        ++i;
      }
    }
  }
  return true;
}

// stb decodes a JPEG cut short as if the missing scan data were zeros; PIL refuses it ("image
// file is truncated"). Entropy-coded data never holds FF D9 (an FF byte is stuffed as FF 00), so
// an FF D9 after the first start-of-scan is the end-of-image marker.
bool JpegHasEndMarker(std::span<const uint8_t> b) {
  size_t i = 2;
  while (i + 1 < b.size() && !(b[i] == 0xff && b[i + 1] == 0xda)) ++i;
  for (; i + 1 < b.size(); ++i) {
    if (b[i] == 0xff && b[i + 1] == 0xd9) return true;
  }
  return false;
}

Status CheckDimensions(int64_t w, int64_t h, const std::string& source, const ImageLimits& limits) {
  if (w == 0 || h == 0) return MakeError(source, ": image has no pixels (", w, "x", h, ")");
  if (w > limits.max_side || h > limits.max_side || w * h > limits.max_pixels) {
    return MakeError(source, ": image is ", w, "x", h, " pixels; the limit is ", limits.max_pixels,
                     " pixels and ", limits.max_side, " per side");
  }
  return Ok();
}

Expected<RgbImage> DecodeWithStb(std::span<const uint8_t> bytes, const std::string& source,
                                 ImageFormat format, const ImageLimits& limits) {
  const int len = static_cast<int>(bytes.size());
  if (format == ImageFormat::kJpeg && !JpegHuffmanTablesSafe(bytes)) {
    return MakeError(source, ": corrupt JPEG (a Huffman table declares more than 256 codes)");
  }
  if (format == ImageFormat::kJpeg && !JpegHasEndMarker(bytes)) {
    return MakeError(source, ": the JPEG is truncated (no end-of-image marker)");
  }
  const Dimensions declared = HeaderDimensions(bytes, format);
  if (declared.width >= 0) {
    GS_RETURN_IF_ERROR(CheckDimensions(declared.width, declared.height, source, limits));
  }
  int w = 0, h = 0, channels = 0;
  if (!stb::Info(bytes.data(), len, &w, &h, &channels)) {
    const std::string why = stb::FailureReason() ? stb::FailureReason() : "unknown";
    if (why == "too large") {
      return MakeError(source, ": the ", ImageFormatName(format), " header declares an image too "
                       "large to decode; the limit is ", limits.max_pixels, " pixels and ",
                       limits.max_side, " per side");
    }
    return MakeError(source, ": cannot read the ", ImageFormatName(format), " header (", why,
                     "); the file is corrupt or truncated");
  }
  if (w <= 0 || h <= 0) return MakeError(source, ": image has no pixels (", w, "x", h, ")");
  GS_RETURN_IF_ERROR(CheckDimensions(w, h, source, limits));
  std::unique_ptr<uint8_t, void (*)(uint8_t*)> data(stb::LoadRgb(bytes.data(), len, &w, &h),
                                                     stb::Free);
  if (!data) {
    return MakeError(source, ": cannot decode the ", ImageFormatName(format), " image (",
                     stb::FailureReason() ? stb::FailureReason() : "unknown",
                     "); the file is corrupt or truncated");
  }
  RgbImage image;
  image.width = w;
  image.height = h;
  image.pixels.assign(data.get(), data.get() + static_cast<size_t>(w) * h * 3);
  return image;
}

// libwebp (Debian's libwebp-dev). Every WebP, still or animated, goes through WebPAnimDecoder as
// PIL's WebP plugin does: the first frame is rendered onto a transparent canvas and its alpha is
// dropped (PIL's convert("RGB")), so fully transparent pixels come out black as with PIL.
Expected<RgbImage> DecodeWebp(std::span<const uint8_t> bytes, const std::string& source,
                              const ImageLimits& limits) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    return MakeError(source, ": cannot read the WebP header; the file is corrupt or truncated");
  }
  GS_RETURN_IF_ERROR(CheckDimensions(features.width, features.height, source, limits));
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) return MakeError(source, ": libwebp version mismatch");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  WebPData data{bytes.data(), bytes.size()};
  std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> decoder(
      WebPAnimDecoderNew(&data, &options), WebPAnimDecoderDelete);
  if (!decoder) {
    return MakeError(source, ": cannot parse the WebP container; the file is corrupt or truncated");
  }
  WebPAnimInfo info;
  if (!WebPAnimDecoderGetInfo(decoder.get(), &info)) {
    return MakeError(source, ": cannot read the WebP image info");
  }
  // An animation's canvas may be larger than its first frame's bitstream header says.
  GS_RETURN_IF_ERROR(CheckDimensions(info.canvas_width, info.canvas_height, source, limits));
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp) || !rgba) {
    return MakeError(source, ": cannot decode the WebP image; the file is corrupt or truncated");
  }
  RgbImage image;
  image.width = static_cast<int>(info.canvas_width);
  image.height = static_cast<int>(info.canvas_height);
  const size_t pixels = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  image.pixels.resize(pixels * 3);
  for (size_t i = 0; i < pixels; ++i) {
    for (size_t c = 0; c < 3; ++c) image.pixels[i * 3 + c] = rgba[i * 4 + c];
  }
  return image;
}

}  // namespace

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kGif: return "GIF";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kUnknown: break;
  }
  return "unknown";
}

ImageFormat DetectImageFormat(std::span<const uint8_t> b) {
  if (StartsWith(b, 0, "\x89PNG\r\n\x1a\n", 8)) return ImageFormat::kPng;
  if (StartsWith(b, 0, "\xff\xd8\xff", 3)) return ImageFormat::kJpeg;
  if (StartsWith(b, 0, "GIF87a", 6) || StartsWith(b, 0, "GIF89a", 6)) return ImageFormat::kGif;
  if (StartsWith(b, 0, "RIFF", 4) && StartsWith(b, 8, "WEBP", 4)) return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

int JpegExifOrientation(std::span<const uint8_t> b) {
  if (!StartsWith(b, 0, "\xff\xd8", 2)) return 1;
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xff) return 1;
    const uint8_t marker = b[i + 1];
    if (marker == 0xff) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xd8 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;  // markers without a length
      continue;
    }
    if (marker == 0xda || marker == 0xd9) return 1;  // scan data / end: no EXIF before it
    const size_t len = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    if (len < 2 || i + 2 + len > b.size()) return 1;
    const std::span<const uint8_t> seg = b.subspan(i + 4, len - 2);
    if (marker == 0xe1 && StartsWith(seg, 0, "Exif\0\0", 6)) return OrientationFromTiff(seg.subspan(6));
    i += 2 + len;
  }
  return 1;
}

RgbImage ApplyExifOrientation(const RgbImage& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int w = in.width, h = in.height;
  const bool swap = orientation >= 5;
  RgbImage out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(in.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;  // the source pixel of output (x, y)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                      // mirror left-right
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;      // rotate 180
        case 4: sy = h - 1 - y; break;                      // mirror top-bottom
        case 5: sx = y; sy = x; break;                      // transpose
        case 6: sx = y; sy = h - 1 - x; break;              // rotate 90 clockwise
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;      // transverse
        case 8: sx = w - 1 - y; sy = x; break;              // rotate 90 counter-clockwise
      }
      for (int c = 0; c < 3; ++c) {
        out.pixels[(static_cast<size_t>(y) * out.width + x) * 3 + c] = in.at(sx, sy, c);
      }
    }
  }
  return out;
}

Expected<RgbImage> DecodeImage(std::span<const uint8_t> bytes, const std::string& source,
                               const ImageLimits& limits) {
  if (bytes.empty()) return MakeError(source, ": the image is empty (0 bytes)");
  if (bytes.size() > limits.max_bytes) {
    return MakeError(source, ": the image has ", bytes.size(), " bytes; the limit is ",
                     limits.max_bytes);
  }
  const ImageFormat format = DetectImageFormat(bytes);
  switch (format) {
    case ImageFormat::kWebp:
      return DecodeWebp(bytes, source, limits);
    case ImageFormat::kUnknown:
      return MakeError(source, ": unsupported or unrecognised image format (supported: PNG, "
                               "JPEG, GIF, WebP)");
    default:
      break;
  }
  GS_ASSIGN_OR_RETURN(RgbImage image, DecodeWithStb(bytes, source, format, limits));
  if (format == ImageFormat::kJpeg) image = ApplyExifOrientation(image, JpegExifOrientation(bytes));
  return image;
}

Expected<RgbImage> LoadImageFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(path, ": cannot open the image file");
  std::vector<uint8_t> bytes;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    bytes.insert(bytes.end(), buf, buf + in.gcount());
    if (bytes.size() > kMaxImageBytes) {
      return MakeError(path, ": the image file is larger than the limit of ", kMaxImageBytes,
                       " bytes");
    }
  }
  if (in.bad()) return MakeError(path, ": error while reading the image file");
  return DecodeImage(bytes, path);
}

}  // namespace gs
