// compressed-tensors NVFP4 ("nvfp4-pack-quantized"): `weight_packed` uint8 [N, K/2],
// `weight_scale` e4m3 [N, K/16], and `weight_global_scale` / `input_global_scale` stored as
// DIVISORS (w = e2m1 × scale / global), so they are inverted here into the multiplier the kernels use.
#include <cmath>

#include "model/formats/formats.h"

namespace gs {

Expected<QuantizedLinear> LoadCompressedTensorsLinear(const TensorStore& store,
                                                      const std::string& prefix, int64_t rows,
                                                      int64_t cols) {
  const TensorView* codes = store.Find(prefix + ".weight_packed");
  const TensorView* scales = store.Find(prefix + ".weight_scale");
  if (!codes) return MakeError("checkpoint is missing tensor '", prefix, ".weight_packed'");
  if (!scales) return MakeError("checkpoint is missing tensor '", prefix, ".weight_scale'");
  if (!store.Find(prefix + ".weight_global_scale")) {
    return MakeError("checkpoint is missing tensor '", prefix, ".weight_global_scale'");
  }
  GS_RETURN_IF_ERROR(nvfp4_detail::CheckCodesAndScales(*codes, *scales, prefix, rows, cols));
  GS_ASSIGN_OR_RETURN(float divisor, LoadScalar(store, prefix + ".weight_global_scale"));
  GS_RETURN_IF_ERROR(nvfp4_detail::CheckGlobalScale(divisor, prefix + ".weight_global_scale"));
  QuantizedLinear q;
  q.name = prefix;
  q.format = WeightFormat::kNvfp4;
  q.rows = rows;
  q.cols = cols;
  q.data = codes->data;
  q.block_scale = scales->data;
  q.global_scale = 1.0f / divisor;
  if (store.Find(prefix + ".input_global_scale")) {
    GS_ASSIGN_OR_RETURN(float input_divisor, LoadScalar(store, prefix + ".input_global_scale"));
    q.input_scale = input_divisor != 0.0f ? 1.0f / input_divisor : INFINITY;
  }
  return q;
}

}  // namespace gs
