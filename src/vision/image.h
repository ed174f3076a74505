// An 8-bit RGB image as the preprocessing works on it, and the input limits that protect the
// server from images that would cost too much memory or time (issue 7).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gs {

// Interleaved RGB, row-major: pixel (x, y) channel c is pixels[(y * width + x) * 3 + c].
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  uint8_t at(int x, int y, int c) const {
    return pixels[(static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) * 3 +
                  static_cast<size_t>(c)];
  }
};

// Encoded bytes of one image (a 4K photo as PNG is ~25 MB; anything larger is refused unread).
inline constexpr size_t kMaxImageBytes = 32u << 20;
// Decoded pixels of one image, checked from the header before any pixel is decoded. PIL refuses
// images above ~179 MP as decompression bombs; 50 MP (e.g. 8660 x 5773) is plenty for a model that
// sees at most 1120 x 9 patches of 16 x 16 px (2.6 MP).
inline constexpr int64_t kMaxImagePixels = 50'000'000;
// Either side.
inline constexpr int kMaxImageSide = 32768;
// The limits one decode applies (the server takes them from its flags; defaults above).
struct ImageLimits {
  size_t max_bytes = kMaxImageBytes;
  int64_t max_pixels = kMaxImagePixels;
  int max_side = kMaxImageSide;
};

// Images in one request (each costs a vision-encoder pass and up to 1120 prompt tokens).
inline constexpr int kMaxImagesPerRequest = 16;

}  // namespace gs
