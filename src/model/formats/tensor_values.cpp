// Reading small tensors (norm weights, scalars) into float, whatever float dtype they use.
#include <cstring>

#include "model/formats/formats.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

Expected<float> ElementAsFloat(const TensorView& t, size_t i) {
  switch (t.dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, t.data + 4 * i, 4);
      return f;
    }
    case DType::kBF16: {
      uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      return Bf16ToFloat(b);
    }
    case DType::kF16: {
      uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      return Fp16ToFloat(b);
    }
    default:
      return MakeError(t.file, ": tensor '", t.name, "' has dtype ", DTypeName(t.dtype),
                       ", expected a float type (F32, BF16 or F16)");
  }
}

}  // namespace

Expected<std::vector<float>> LoadVector(const TensorStore& store, const std::string& name,
                                        int64_t numel) {
  const TensorView* t = store.Find(name);
  if (!t) return MakeError("checkpoint is missing tensor '", name, "'");
  if (t->numel() != numel || t->shape.size() != 1) {
    return MakeError(t->file, ": tensor '", name, "' has shape ", t->ShapeString(),
                     ", expected [", numel, "]");
  }
  std::vector<float> out(static_cast<size_t>(numel));
  for (size_t i = 0; i < out.size(); ++i) {
    GS_ASSIGN_OR_RETURN(out[i], ElementAsFloat(*t, i));
  }
  return out;
}

Expected<float> LoadScalar(const TensorStore& store, const std::string& name) {
  const TensorView* t = store.Find(name);
  if (!t) return MakeError("checkpoint is missing tensor '", name, "'");
  const bool scalar_shape = t->shape.empty() || (t->shape.size() == 1 && t->shape[0] == 1);
  if (!scalar_shape) {
    return MakeError(t->file, ": tensor '", name, "' has shape ", t->ShapeString(),
                     ", expected a scalar ([] or [1])");
  }
  return ElementAsFloat(*t, 0);
}

}  // namespace gs
