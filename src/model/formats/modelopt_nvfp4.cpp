// ModelOpt NVFP4: `weight` uint8 [N, K/2], `weight_scale` e4m3 [N, K/16], `weight_scale_2` and
// `input_scale` fp32 multipliers of shape [] or [1].
#include "model/formats/formats.h"

namespace gs {

Expected<QuantizedLinear> LoadModeloptLinear(const TensorStore& store, const std::string& prefix,
                                             int64_t rows, int64_t cols) {
  const TensorView* codes = store.Find(prefix + ".weight");
  const TensorView* scales = store.Find(prefix + ".weight_scale");
  if (!codes) return MakeError("checkpoint is missing tensor '", prefix, ".weight'");
  if (!scales) return MakeError("checkpoint is missing tensor '", prefix, ".weight_scale'");
  if (!store.Find(prefix + ".weight_scale_2")) {
    return MakeError("checkpoint is missing tensor '", prefix, ".weight_scale_2'");
  }
  GS_RETURN_IF_ERROR(nvfp4_detail::CheckCodesAndScales(*codes, *scales, prefix, rows, cols));
  QuantizedLinear q;
  q.name = prefix;
  q.format = WeightFormat::kNvfp4;
  q.rows = rows;
  q.cols = cols;
  q.data = codes->data;
  q.block_scale = scales->data;
  GS_ASSIGN_OR_RETURN(q.global_scale, LoadScalar(store, prefix + ".weight_scale_2"));
  GS_RETURN_IF_ERROR(nvfp4_detail::CheckGlobalScale(q.global_scale, prefix + ".weight_scale_2"));
  // input_scale only matters for FP4 activations (Blackwell); uncalibrated ones may be 0 or inf.
  if (store.Find(prefix + ".input_scale")) {
    GS_ASSIGN_OR_RETURN(q.input_scale, LoadScalar(store, prefix + ".input_scale"));
  }
  return q;
}

}  // namespace gs
