// The content key of a preprocessed image for the prefix cache: two images share KV only when the
// model would see exactly the same input.
#pragma once

#include <string>

#include "vision/image_processor.h"

namespace gs {

// SHA-256 over the geometry (resized size, patch grid, patch size, pooling, soft-token count) and
// the pixel values (their float bytes).
std::string ImageContentHash(const ProcessedImage& image);

}  // namespace gs
