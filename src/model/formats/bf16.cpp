// BF16 weights as transformers saves them: `<prefix>.weight` [N, K], and the fused 3-D expert
// tensors of Gemma 4 (`experts.gate_up_proj` [E, 2I, H], `experts.down_proj` [E, H, I]).
#include "model/formats/formats.h"

namespace gs {
namespace {

Status CheckBf16(const TensorView& t, const std::vector<int64_t>& shape) {
  if (t.dtype != DType::kBF16) {
    return MakeError(t.file, ": tensor '", t.name, "' has dtype ", DTypeName(t.dtype),
                     ", expected BF16");
  }
  if (t.shape != shape) {
    std::vector<std::string> dims;
    for (int64_t d : shape) dims.push_back(std::to_string(d));
    return MakeError(t.file, ": tensor '", t.name, "' has shape ", t.ShapeString(),
                     ", expected [", Join(dims, ", "), "]");
  }
  return Ok();
}

QuantizedLinear Bf16View(const std::string& name, const uint8_t* data, int64_t rows, int64_t cols) {
  QuantizedLinear q;
  q.name = name;
  q.format = WeightFormat::kBf16;
  q.rows = rows;
  q.cols = cols;
  q.data = data;
  return q;
}

}  // namespace

Expected<QuantizedLinear> LoadBf16Linear(const TensorStore& store, const std::string& prefix,
                                         int64_t rows, int64_t cols) {
  const std::string name = prefix + ".weight";
  const TensorView* t = store.Find(name);
  if (!t) return MakeError("checkpoint is missing tensor '", name, "'");
  GS_RETURN_IF_ERROR(CheckBf16(*t, {rows, cols}));
  return Bf16View(prefix, t->data, rows, cols);
}

Expected<ExpertWeights> LoadFusedBf16Expert(const TensorView& gate_up, const TensorView& down,
                                            int expert, int64_t hidden, int64_t inter) {
  const int64_t num_experts = gate_up.shape.empty() ? 0 : gate_up.shape[0];
  GS_RETURN_IF_ERROR(CheckBf16(gate_up, {num_experts, 2 * inter, hidden}));
  GS_RETURN_IF_ERROR(CheckBf16(down, {num_experts, hidden, inter}));
  const size_t gate_bytes = static_cast<size_t>(inter * hidden * 2);
  const uint8_t* gu = gate_up.data + static_cast<size_t>(expert) * 2 * gate_bytes;
  const std::string base = StrCat(gate_up.name.substr(0, gate_up.name.rfind('.')), ".", expert);
  ExpertWeights e;
  e.gate = Bf16View(base + ".gate_proj", gu, inter, hidden);
  e.up = Bf16View(base + ".up_proj", gu + gate_bytes, inter, hidden);
  e.down = Bf16View(base + ".down_proj", down.data + static_cast<size_t>(expert) * gate_bytes,
                    hidden, inter);
  return e;
}

}  // namespace gs
