// How many images one vision-encoder pass takes. The CUDA encoder runs every image it is given as
// rows of the same GEMMs, so its scratch grows with the patches of the pass (~85 KB per patch for
// the 27 × 1152 tower); the engine cuts a step's images into passes under both limits below, and
// the serving memory probe (runtime/cuda/serving_runner.h) measures the encoder at exactly this
// worst case, so the KV pool leaves room for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "model/config.h"
#include "vision/image_processor.h"

namespace gs {

// Images per encoder pass.
inline constexpr int kMaxImagesPerEncode = 8;
// Patches per encoder pass: 8 images at the default budget of 280 soft tokens (2520 patches
// each). One image at the largest budget (1120 soft tokens, 10080 patches) fits alone.
inline constexpr int64_t kMaxPatchesPerEncode = int64_t{kMaxImagesPerEncode} * 280 * 9;

// Cuts images with `patches[i]` patches, in order, into consecutive passes [begin, end) of at most
// `max_images` images and `max_patches` patches each; an image above `max_patches` on its own
// gets a pass of its own (the caller refuses it or lets the encoder do so).
std::vector<std::pair<size_t, size_t>> PlanEncodeGroups(const std::vector<int64_t>& patches,
                                                        int max_images = kMaxImagesPerEncode,
                                                        int64_t max_patches = kMaxPatchesPerEncode);

// The largest pass the engine makes, for the serving memory probe: kMaxImagesPerEncode images of
// kMaxPatchesPerEncode / kMaxImagesPerEncode patches each (42 × 60 for the real tower), valid
// input for `vc` (whole pooling windows, inside the position table; a table too small for that
// many patches per image gets the largest grid it holds). Pixels are mid-gray.
std::vector<ProcessedImage> WorstCaseEncodePass(const VisionConfig& vc);

}  // namespace gs
