// NumPy .npy files (format 1.0, little-endian float32, C order): --dump-logits writes them and
// the golden tests read transformers' reference logits from them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace gs {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                       const float* data);
Expected<NpyArray> ReadNpyFloat32(const std::string& path);

}  // namespace gs
