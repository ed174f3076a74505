#include "vision/image_processor.h"

#include <cmath>

#include "vision/image_resize.h"

namespace gs {

Status ValidateImageProcessorOptions(const ImageProcessorOptions& o) {
  bool supported = false;
  for (int b : kSupportedSoftTokenBudgets) supported |= b == o.max_soft_tokens;
  if (!supported) {
    return MakeError("max_soft_tokens = ", o.max_soft_tokens,
                     ": must be one of 70, 140, 280, 560, 1120 (Gemma 4 image token budgets)");
  }
  if (o.patch_size <= 0 || o.patch_size > 64 || o.pooling_kernel_size <= 0 ||
      o.pooling_kernel_size > 8) {
    return MakeError("image processor: patch_size ", o.patch_size, " / pooling_kernel_size ",
                     o.pooling_kernel_size, " out of range");
  }
  return Ok();
}

Expected<ResizeTarget> AspectRatioPreservingSize(int height, int width,
                                                 const ImageProcessorOptions& o) {
  GS_RETURN_IF_ERROR(ValidateImageProcessorOptions(o));
  if (height <= 0 || width <= 0) return MakeError("image has no pixels (", width, "x", height, ")");
  const int k2 = o.pooling_kernel_size * o.pooling_kernel_size;
  const int64_t max_patches = static_cast<int64_t>(o.max_soft_tokens) * k2;
  const double total_px = static_cast<double>(height) * width;
  const double target_px = static_cast<double>(max_patches) * o.patch_size * o.patch_size;
  const double factor = std::sqrt(target_px / total_px);
  const int side = o.pooling_kernel_size * o.patch_size;
  int64_t th = static_cast<int64_t>(std::floor(factor * height / side)) * side;
  int64_t tw = static_cast<int64_t>(std::floor(factor * width / side)) * side;
  if (th == 0 && tw == 0) {
    return MakeError("image of ", width, "x", height, " would resize to 0x0");
  }
  const int64_t max_side = (max_patches / k2) * side;
  if (th == 0) {
    th = side;
    tw = std::min(static_cast<int64_t>(std::floor(static_cast<double>(width) / height)) * side,
                  max_side);
  } else if (tw == 0) {
    tw = side;
    th = std::min(static_cast<int64_t>(std::floor(static_cast<double>(height) / width)) * side,
                  max_side);
  }
  if (static_cast<double>(th) * static_cast<double>(tw) > target_px) {
    return MakeError("image of ", width, "x", height, " would resize to ", tw, "x", th,
                     ", more than ", max_patches, " patches");
  }
  return ResizeTarget{static_cast<int>(th), static_cast<int>(tw)};
}

Expected<ProcessedImage> PreprocessImage(const RgbImage& image, const ImageProcessorOptions& o) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return MakeError("image of ", image.width, "x", image.height, " has ", image.pixels.size(),
                     " bytes of pixels (expected width·height·3)");
  }
  GS_ASSIGN_OR_RETURN(ResizeTarget t, AspectRatioPreservingSize(image.height, image.width, o));
  const RgbImage resized = (t.height == image.height && t.width == image.width)
                               ? image
                               : ResizeBicubicAntialias(image, t.width, t.height);
  ProcessedImage out;
  out.height = t.height;
  out.width = t.width;
  out.patch_size = o.patch_size;
  out.pooling_kernel_size = o.pooling_kernel_size;
  out.patches_h = t.height / o.patch_size;
  out.patches_w = t.width / o.patch_size;
  out.num_soft_tokens = out.num_patches() / (o.pooling_kernel_size * o.pooling_kernel_size);
  const int p = o.patch_size, dim = out.patch_dim();
  out.pixel_values.resize(static_cast<size_t>(out.num_patches()) * dim);
  // torch: uint8 tensor * python float -> float32(v) * float32(1/255).
  const float inv255 = static_cast<float>(1.0 / 255.0);
  for (int py = 0; py < out.patches_h; ++py) {
    for (int px = 0; px < out.patches_w; ++px) {
      float* dst = &out.pixel_values[static_cast<size_t>(py * out.patches_w + px) * dim];
      for (int r = 0; r < p; ++r) {
        for (int c = 0; c < p; ++c) {
          for (int ch = 0; ch < 3; ++ch) {
            *dst++ = static_cast<float>(resized.at(px * p + c, py * p + r, ch)) * inv255;
          }
        }
      }
      out.position_x.push_back(px);
      out.position_y.push_back(py);
    }
  }
  return out;
}

std::vector<int32_t> ImagePromptTokens(int num_soft_tokens, int32_t boi, int32_t image_token,
                                       int32_t eoi) {
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(num_soft_tokens) + 2);
  ids.push_back(boi);
  ids.insert(ids.end(), static_cast<size_t>(num_soft_tokens), image_token);
  ids.push_back(eoi);
  return ids;
}

}  // namespace gs
