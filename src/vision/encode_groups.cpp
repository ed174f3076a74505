#include "vision/encode_groups.h"

#include <algorithm>

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

}  // namespace gs
