#include "vision/image_hash.h"

#include <cstdint>

#include "util/sha256.h"

namespace gs {

std::string ImageContentHash(const ProcessedImage& image) {
  Sha256 sha;
  const int32_t header[] = {image.height,    image.width,      image.patches_h,
                            image.patches_w, image.patch_size, image.pooling_kernel_size,
                            image.num_soft_tokens};
  sha.Update(header, sizeof header);
  sha.Update(image.pixel_values.data(), image.pixel_values.size() * sizeof(float));
  return sha.HexDigest();
}

}  // namespace gs
