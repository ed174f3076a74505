#include "vision/encode_groups.h"

#include <algorithm>
#include <cmath>

namespace gs {

std::vector<std::pair<size_t, size_t>> PlanEncodeGroups(const std::vector<int64_t>& patches,
                                                        int max_images, int64_t max_patches) {
  std::vector<std::pair<size_t, size_t>> groups;
  const size_t cap = static_cast<size_t>(std::max(max_images, 1));
  size_t begin = 0;
  int64_t sum = 0;
  for (size_t i = 0; i < patches.size(); ++i) {
    const bool full = i - begin == cap || (i > begin && sum + patches[i] > max_patches);
    if (full) {
      groups.emplace_back(begin, i);
      begin = i;
      sum = 0;
    }
    sum += patches[i];
  }
  if (begin < patches.size()) groups.emplace_back(begin, patches.size());
  return groups;
}

std::vector<ProcessedImage> WorstCaseEncodePass(const VisionConfig& vc) {
  const int k = std::max(vc.pooling_kernel_size, 1);
  const int64_t soft = kMaxPatchesPerEncode / kMaxImagesPerEncode / (int64_t{k} * k);
  const int64_t side = std::max(vc.position_embedding_size / k, 1);  // pooled cells per side
  // The squarest pooled grid ph × pw = soft inside the table, else the largest that fits.
  int64_t ph = 0, pw = 0;
  for (int64_t h = static_cast<int64_t>(std::sqrt(static_cast<double>(soft))); h >= 1; --h) {
    if (soft % h == 0 && h <= side && soft / h <= side) {
      ph = h;
      pw = soft / h;
      break;
    }
  }
  if (ph == 0) {
    ph = std::min(side, soft);
    pw = std::min(side, soft / ph);
  }
  ProcessedImage img;
  img.patch_size = vc.patch_size;
  img.pooling_kernel_size = k;
  img.patches_h = static_cast<int>(ph * k);
  img.patches_w = static_cast<int>(pw * k);
  img.height = img.patches_h * img.patch_size;
  img.width = img.patches_w * img.patch_size;
  img.num_soft_tokens = static_cast<int>(ph * pw);
  img.pixel_values.assign(static_cast<size_t>(img.num_patches()) * img.patch_dim(), 0.5f);
  for (int t = 0; t < img.num_patches(); ++t) {
    img.position_x.push_back(t % img.patches_w);
    img.position_y.push_back(t / img.patches_w);
  }
  return std::vector<ProcessedImage>(kMaxImagesPerEncode, img);
}

}  // namespace gs
