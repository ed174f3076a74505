// transformers' Gemma4ImageProcessor (torchvision backend, the default in transformers 5.x):
// aspect-preserving resize to sides that are multiples of patch·pooling (48 px) within the patch
// budget max_soft_tokens·pooling² , rescale by 1/255, 16×16 patches, (x, y) patch positions.
// Padding to max_patches is not materialised: the encoder only needs the valid patches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"
#include "vision/image.h"

namespace gs {

struct ImageProcessorOptions {
  int patch_size = 16;
  int pooling_kernel_size = 3;
  int max_soft_tokens = 280;  // one of kSupportedSoftTokenBudgets
};

// The budgets transformers accepts (Gemma4ImageProcessor raises for any other).
inline constexpr int kSupportedSoftTokenBudgets[] = {70, 140, 280, 560, 1120};

// Checks max_soft_tokens (and the geometry) with an error naming the parameter.
Status ValidateImageProcessorOptions(const ImageProcessorOptions& options);

struct ResizeTarget {
  int height = 0;
  int width = 0;
};

// get_aspect_ratio_preserving_size: f = sqrt(max_patches·p² / (h·w)); each side floor(f·side / s)·s
// with s = pooling·patch; a side that rounds to 0 becomes s and the other floor(ratio)·s capped at
// (max_patches / pooling²)·s. Errors where transformers raises (both sides 0, over budget).
Expected<ResizeTarget> AspectRatioPreservingSize(int height, int width,
                                                 const ImageProcessorOptions& options);

struct ProcessedImage {
  int height = 0, width = 0;         // after the resize
  int patches_h = 0, patches_w = 0;  // patch grid
  int num_soft_tokens = 0;           // patches / pooling²: the <|image|> tokens of this image
  int patch_size = 16;
  int pooling_kernel_size = 3;
  // [patches_h · patches_w, patch² · 3]: patch index y·patches_w + x (raster); inside a patch
  // (pixel row, pixel col, channel); value = float(uint8) · float(1/255).
  std::vector<float> pixel_values;
  // Patch (x, y) = (index % patches_w, index / patches_w); stored for the encoder's convenience.
  std::vector<int32_t> position_x, position_y;

  int num_patches() const { return patches_h * patches_w; }
  int patch_dim() const { return patch_size * patch_size * 3; }
};

// Resize (if the target differs), rescale, patchify.
Expected<ProcessedImage> PreprocessImage(const RgbImage& image,
                                         const ImageProcessorOptions& options);

// The prompt tokens of one image: boi, num_soft_tokens × image_token, eoi.
std::vector<int32_t> ImagePromptTokens(int num_soft_tokens, int32_t boi, int32_t image_token,
                                       int32_t eoi);

}  // namespace gs
