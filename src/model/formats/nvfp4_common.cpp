// Checks shared by the two NVFP4 checkpoint formats (reference nvfp4 §3.4 loader checklist).
#include <cmath>

#include "model/formats/formats.h"
#include "util/numeric_formats.h"

namespace gs::nvfp4_detail {

Status CheckCodesAndScales(const TensorView& codes, const TensorView& scales,
                           const std::string& prefix, int64_t rows, int64_t cols) {
  if (cols % 16 != 0) {
    return MakeError("'", prefix, "': input size ", cols, " is not a multiple of the NVFP4 group 16");
  }
  if (codes.dtype != DType::kU8 && codes.dtype != DType::kI8) {
    return MakeError(codes.file, ": tensor '", codes.name, "' has dtype ", DTypeName(codes.dtype),
                     ", expected U8 (packed E2M1 codes)");
  }
  if (codes.shape != std::vector<int64_t>{rows, cols / 2}) {
    return MakeError(codes.file, ": tensor '", codes.name, "' has shape ", codes.ShapeString(),
                     ", expected [", rows, ", ", cols / 2, "]");
  }
  if (scales.dtype != DType::kF8E4M3) {
    return MakeError(scales.file, ": tensor '", scales.name, "' has dtype ",
                     DTypeName(scales.dtype),
                     ", expected F8_E4M3 (a 1-D uint8 scale is the swizzled TensorRT-LLM layout, "
                     "which checkpoints do not use)");
  }
  if (scales.shape != std::vector<int64_t>{rows, cols / 16}) {
    return MakeError(scales.file, ": tensor '", scales.name, "' has shape ", scales.ShapeString(),
                     ", expected [", rows, ", ", cols / 16, "]");
  }
  for (size_t i = 0; i < scales.nbytes; ++i) {
    if (E4m3IsNan(scales.data[i])) {
      return MakeError(scales.file, ": tensor '", scales.name, "' holds a NaN block scale at index ",
                       i);
    }
  }
  return Ok();
}

Status CheckGlobalScale(float value, const std::string& name) {
  if (!std::isfinite(value) || value <= 0.0f) {
    return MakeError("tensor '", name, "' = ", value, ": an NVFP4 global scale must be finite and > 0");
  }
  return Ok();
}

}  // namespace gs::nvfp4_detail
