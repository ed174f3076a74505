// Decoding PNG, JPEG, GIF (first frame) and WebP (first frame) into 8-bit RGB, with the same
// conversions PIL applies before transformers' Gemma4ImageProcessor sees the image:
//  * gray -> R = G = B; palette -> its RGB entries; alpha (RGBA, gray+alpha, palette
//    transparency) is dropped, not composited (transformers calls PIL's convert("RGB"); the
//    golden data shows the processor output equal with and without load_image).
//  * JPEG: the EXIF orientation tag (APP1, tag 0x0112) is applied, as transformers' load_image
//    does with PIL.ImageOps.exif_transpose.
//  * 16-bit PNG channels keep their high byte.
//  * WebP (libwebp): rendered as PIL does (WebPAnimDecoder, first frame, alpha dropped).
// Decoding uses Debian's stb_image and libwebp; every failure is an error naming the source, never
// a crash. The size limits of vision/image.h apply to every format, checked from the header.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "util/status.h"
#include "vision/image.h"

namespace gs {

enum class ImageFormat { kPng, kJpeg, kGif, kWebp, kUnknown };

const char* ImageFormatName(ImageFormat format);

// By the file signature (magic bytes).
ImageFormat DetectImageFormat(std::span<const uint8_t> bytes);

// `source` names the image in error messages (a path, "request image 2", ...).
Expected<RgbImage> DecodeImage(std::span<const uint8_t> bytes, const std::string& source,
                               const ImageLimits& limits = {});

// Reads (at most kMaxImageBytes) and decodes a file.
Expected<RgbImage> LoadImageFile(const std::string& path);

// The EXIF orientation (1..8) of a JPEG, 1 when absent or unreadable.
int JpegExifOrientation(std::span<const uint8_t> bytes);

// Applies EXIF orientation 1..8 (PIL.ImageOps.exif_transpose semantics; 5..8 swap the sides).
RgbImage ApplyExifOrientation(const RgbImage& image, int orientation);

}  // namespace gs
