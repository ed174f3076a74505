#include "tools/quantize.h"

#include <cstring>
#include <memory>
#include <optional>
#include <regex>

#include "model/config.h"
#include "model/nvfp4_quantize.h"
#include "model/quant_config.h"
#include "model/weights.h"
#include "tools/calibration.h"
#include "tools/checkpoint_writer.h"
#include "tools/modelopt_config.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

// bf16 [rows, cols] starting at `data` (possibly unaligned) as float.
std::vector<float> Bf16ToFloats(const uint8_t* data, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, data + 2 * i, 2);
    out[i] = Bf16ToFloat(b);
  }
  return out;
}

// The three tensors of one quantized linear share one quantization, computed when the first
// of them is written and dropped after the last.
void AddQuantized(const std::string& module, const uint8_t* bf16, int64_t rows, int64_t cols,
                  const std::map<std::string, float>* input_amax, std::vector<OutputTensor>* out) {
  auto cache = std::make_shared<std::optional<Nvfp4Weights>>();
  auto get = [=]() -> Nvfp4Weights& {
    if (!cache->has_value()) *cache = QuantizeNvfp4(Bf16ToFloats(bf16, rows, cols).data(), rows, cols);
    return **cache;
  };
  out->push_back({{module + ".weight", DType::kU8, {rows, cols / 2}},
                  [=](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> {
                    return std::span<const uint8_t>(get().codes);
                  },
                  static_cast<uint64_t>(rows * cols * 2)});
  out->push_back({{module + ".weight_scale", DType::kF8E4M3, {rows, cols / 16}},
                  [=](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> {
                    return std::span<const uint8_t>(get().scales);
                  }});
  out->push_back({{module + ".weight_scale_2", DType::kF32, {}},
                  [=](std::vector<uint8_t>& scratch) -> Expected<std::span<const uint8_t>> {
                    scratch.resize(4);
                    std::memcpy(scratch.data(), &get().global_scale, 4);
                    cache->reset();
                    return std::span<const uint8_t>(scratch);
                  }});
  const auto seen = input_amax ? input_amax->find(module) : std::map<std::string, float>::const_iterator{};
  if (!input_amax || seen == input_amax->end()) return;
  // ModelOpt: input_scale = amax / (6 · 448), computed in double and rounded once.
  const float scale = static_cast<float>(static_cast<double>(seen->second) / (6.0 * 448.0));
  out->push_back({{module + ".input_scale", DType::kF32, {}},
                  [scale](std::vector<uint8_t>& scratch) -> Expected<std::span<const uint8_t>> {
                    scratch.resize(4);
                    std::memcpy(scratch.data(), &scale, 4);
                    return std::span<const uint8_t>(scratch);
                  }});
}

OutputTensor Copy(const TensorView* v) {
  return {{v->name, v->dtype, v->shape},
          [v](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> {
            return std::span<const uint8_t>(v->data, v->nbytes);
          }};
}

class Planner {
 public:
  Planner(const ModelConfig& c, const QuantizationInfo& excluded, std::string prefix,
          const std::map<std::string, float>* input_amax)
      : c_(c), excluded_(excluded), prefix_(std::move(prefix)), input_amax_(input_amax) {}

  std::vector<OutputTensor> Plan(const TensorStore& store) const {
    static const std::regex layer_re(R"(^(.*)layers\.(\d+)\.(experts\.(gate_up_proj|down_proj)|mlp\.(gate|up|down)_proj\.weight)$)");
    std::vector<OutputTensor> out;
    for (const auto& [name, view] : store.all()) {
      std::smatch m;
      if (!std::regex_match(name, m, layer_re) || m[1] != prefix_) {
        out.push_back(Copy(view));
        continue;
      }
      const std::string layer = StrCat(prefix_, "layers.", m[2].str(), ".");
      if (m[4] == "gate_up_proj") {
        PlanFusedGateUp(layer, *view, &out);
      } else if (m[4] == "down_proj") {
        PlanFusedDown(layer, *view, &out);
      } else {
        const std::string module = name.substr(0, name.size() - 7);
        if (excluded_.IsIgnored(module)) out.push_back(Copy(view));
        else AddQuantized(module, view->data, view->shape[0], view->shape[1], input_amax_, &out);
      }
    }
    return out;
  }

 private:
  // Expert e of [E, 2I, H]: rows [0, I) are gate, [I, 2I) are up; each gets its own scale.
  void PlanFusedGateUp(const std::string& layer, const TensorView& v, std::vector<OutputTensor>* out) const {
    const int64_t inter = c_.moe_intermediate_size, h = c_.hidden_size;
    for (int e = 0; e < c_.num_experts; ++e) {
      const uint8_t* base = v.data + static_cast<size_t>(e) * 2 * inter * h * 2;
      const std::string m = StrCat(layer, "experts.", e, ".");
      AddOrKeep(m + "gate_proj", base, inter, h, out);
      AddOrKeep(m + "up_proj", base + inter * h * 2, inter, h, out);
    }
  }

  void PlanFusedDown(const std::string& layer, const TensorView& v, std::vector<OutputTensor>* out) const {
    const int64_t inter = c_.moe_intermediate_size, h = c_.hidden_size;
    for (int e = 0; e < c_.num_experts; ++e) {
      AddOrKeep(StrCat(layer, "experts.", e, ".down_proj"), v.data + static_cast<size_t>(e) * h * inter * 2,
                h, inter, out);
    }
  }

  // An excluded expert stays BF16 as a per-expert 2-D tensor (the loader accepts mixed banks).
  void AddOrKeep(const std::string& module, const uint8_t* data, int64_t rows, int64_t cols,
                 std::vector<OutputTensor>* out) const {
    if (!excluded_.IsIgnored(module)) return AddQuantized(module, data, rows, cols, input_amax_, out);
    out->push_back({{module + ".weight", DType::kBF16, {rows, cols}},
                    [data, rows, cols](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> {
                      return std::span<const uint8_t>(data, static_cast<size_t>(rows * cols * 2));
                    }});
  }

  const ModelConfig& c_;
  const QuantizationInfo& excluded_;
  std::string prefix_;
  const std::map<std::string, float>* input_amax_;
};

}  // namespace

Status QuantizeBf16ToNvfp4(const QuantizeOptions& o) {
  GS_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(o.from));
  GS_ASSIGN_OR_RETURN(QuantizationInfo declared, LoadQuantizationInfo(o.from));
  if (declared.method != QuantMethod::kNone) {
    return MakeError(o.from, " is already quantized (", QuantMethodName(declared.method),
                     "): quantize takes a BF16 checkpoint");
  }
  GS_ASSIGN_OR_RETURN(TensorStore opened, TensorStore::OpenDirectory(o.from));
  auto store = std::make_shared<const TensorStore>(std::move(opened));
  GS_ASSIGN_OR_RETURN(Gemma4Weights weights, BindGemma4Weights(config, store, declared));
  if (!config.enable_moe_block || !store->Find(weights.prefix + "layers.0.experts.gate_up_proj")) {
    return MakeError(o.from, ": quantize expects transformers' fused BF16 experts "
                     "(layers.N.experts.gate_up_proj / down_proj)");
  }
  if (config.moe_intermediate_size % 16 || config.hidden_size % 16 || config.intermediate_size % 16) {
    return MakeError(o.from, ": hidden and intermediate sizes must be multiples of 16 for NVFP4");
  }
  auto exclude = ModeloptExcludeModules(weights.prefix);
  exclude.insert(exclude.end(), o.exclude.begin(), o.exclude.end());
  QuantizationInfo excluded;
  excluded.ignore = o.exclude;
  std::optional<std::map<std::string, float>> amax;
  if (!o.calib_file.empty()) {
    GS_ASSIGN_OR_RETURN(auto seqs, ReadCalibrationSequences(o.calib_file, o.from, o.calib_chunk_tokens,
                                                            config.vocab_size));
    GS_ASSIGN_OR_RETURN(amax, MeasureInputAmax(config, weights, seqs));
  }
  // The calibration pass reads every weight; whatever it left resident is dropped before writing.
  store->ReleasePages();
  const std::vector<OutputTensor> tensors =
      Planner(config, excluded, weights.prefix, amax ? &*amax : nullptr).Plan(*store);
  const ModeloptDeclaration declaration{"gemmaserve quantize", amax.has_value(), exclude};
  GS_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Begin(o.to, o.overwrite));
  GS_RETURN_IF_ERROR(writer->WriteTensors(tensors, o.max_shard_bytes, "quantizing", store.get()));
  GS_RETURN_IF_ERROR(WriteModeloptMetadata(o.from, declaration, writer.get()));
  return writer->Commit();
}

}  // namespace gs
