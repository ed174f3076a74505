// Picks the weight format of one linear from the tensors present and checks it against the
// quantization the checkpoint declares.
#include "model/formats/formats.h"

namespace gs {

Expected<QuantizedLinear> LoadLinear(const TensorStore& store, const QuantizationInfo& quant,
                                     const std::string& prefix, int64_t rows, int64_t cols) {
  if (store.Find(prefix + ".weight_packed")) {
    if (quant.method != QuantMethod::kCompressedTensors) {
      return MakeError("tensor '", prefix, ".weight_packed' is compressed-tensors NVFP4, but the "
                       "checkpoint declares quantization ", QuantMethodName(quant.method));
    }
    return LoadCompressedTensorsLinear(store, prefix, rows, cols);
  }
  const TensorView* w = store.Find(prefix + ".weight");
  if (!w) return MakeError("checkpoint is missing tensor '", prefix, ".weight'");
  if (w->dtype == DType::kU8 || store.Find(prefix + ".weight_scale_2")) {
    if (quant.method != QuantMethod::kModelopt) {
      return MakeError("tensor '", prefix, ".weight' is ModelOpt NVFP4, but the checkpoint "
                       "declares quantization ", QuantMethodName(quant.method));
    }
    return LoadModeloptLinear(store, prefix, rows, cols);
  }
  if (store.Find(prefix + ".weight_scale")) {
    return MakeError("tensor '", prefix, ".weight' has a weight_scale but no weight_scale_2 "
                     "(incomplete NVFP4 scales)");
  }
  return LoadBf16Linear(store, prefix, rows, cols);
}

}  // namespace gs
