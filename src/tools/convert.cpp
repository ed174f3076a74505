#include "tools/convert.h"

#include <cstring>
#include <regex>

#include "model/config.h"
#include "model/formats/formats.h"
#include "model/quant_config.h"
#include "model/weights.h"
#include "tools/checkpoint_writer.h"
#include "tools/modelopt_config.h"
#include "tools/source_pages.h"
#include "util/mapped_file.h"
#include "util/numeric_formats.h"

namespace gs {
namespace {

const std::regex& AttentionProjection() {
  static const std::regex re(R"(^(.*\.self_attn\.(q|k|v|o)_proj)\.(weight_packed|weight_scale|weight_global_scale|input_global_scale|weight_zero_point)$)");
  return re;
}

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string Stem(const std::string& s, const char* suffix) {
  return s.substr(0, s.size() - std::strlen(suffix));
}

std::span<const uint8_t> Bytes(const TensorView& v) { return {v.data, v.nbytes}; }

// One fp32 scalar holding 1/x of the divisor tensor `divisor`.
OutputTensor Reciprocal(const TensorView& divisor, const std::string& name) {
  return {{name, DType::kF32, {}},
          [&divisor](std::vector<uint8_t>& scratch) -> Expected<std::span<const uint8_t>> {
            float x;
            std::memcpy(&x, divisor.data, 4);
            const float r = 1.0f / x;
            scratch.resize(4);
            std::memcpy(scratch.data(), &r, 4);
            return std::span<const uint8_t>(scratch);
          }};
}

// BF16 of e2m1 × e4m3 ÷ global divisor, computed in fp32 then rounded once.
OutputTensor Dequantized(const TensorStore& store, const std::string& module) {
  const TensorView* codes = store.Find(module + ".weight_packed");
  const int64_t rows = codes->shape[0], cols = codes->shape[1] * 2;
  OutputTensor out{{module + ".weight", DType::kBF16, {rows, cols}},
          [&store, module, rows, cols](std::vector<uint8_t>& scratch) -> Expected<std::span<const uint8_t>> {
            GS_ASSIGN_OR_RETURN(QuantizedLinear q, LoadCompressedTensorsLinear(store, module, rows, cols));
            float divisor;
            std::memcpy(&divisor, store.Find(module + ".weight_global_scale")->data, 4);
            scratch.resize(static_cast<size_t>(rows * cols) * 2);
            std::vector<float> row(static_cast<size_t>(cols));
            for (int64_t n = 0; n < rows; ++n) {
              q.DequantizeRowUnscaled(n, row.data());
              for (int64_t k = 0; k < cols; ++k) {
                const uint16_t b = FloatToBf16(row[static_cast<size_t>(k)] / divisor);
                std::memcpy(&scratch[static_cast<size_t>(n * cols + k) * 2], &b, 2);
              }
            }
            return std::span<const uint8_t>(scratch);
          }};
  out.source_bytes = codes->nbytes + store.Find(module + ".weight_scale")->nbytes;
  return out;
}

Expected<std::vector<OutputTensor>> PlanTensors(const TensorStore& store) {
  std::vector<OutputTensor> out;
  for (const auto& [name, view] : store.all()) {
    std::smatch m;
    if (std::regex_match(name, m, AttentionProjection())) {
      if (m[3] == "weight_packed") out.push_back(Dequantized(store, m[1]));
      continue;  // its scales vanish with it
    }
    if (EndsWith(name, ".weight_zero_point")) continue;  // unused for symmetric FP4
    if (EndsWith(name, ".weight_packed")) {
      out.push_back({{Stem(name, "_packed"), view->dtype, view->shape},
                     [view = view](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> { return Bytes(*view); }});
    } else if (EndsWith(name, ".weight_global_scale")) {
      out.push_back(Reciprocal(*view, Stem(name, "weight_global_scale") + "weight_scale_2"));
    } else if (EndsWith(name, ".input_global_scale")) {
      out.push_back(Reciprocal(*view, Stem(name, "input_global_scale") + "input_scale"));
    } else {
      out.push_back({{name, view->dtype, view->shape},
                     [view = view](std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> { return Bytes(*view); }});
    }
  }
  return out;
}

// Everything convert will read is checked before anything is written.
Status ValidateScales(const TensorStore& store) {
  SourcePages pages(&store);
  for (const auto& [name, view] : store.all()) {
    if (!EndsWith(name, "_global_scale")) continue;
    pages.Read(view->nbytes);
    if (view->dtype != DType::kF32 || view->numel() != 1) {
      return MakeError(view->file, ": tensor '", name, "' must be one F32 value, is ",
                       DTypeName(view->dtype), " ", view->ShapeString());
    }
    float x;
    std::memcpy(&x, view->data, 4);
    if (EndsWith(name, "weight_global_scale")) GS_RETURN_IF_ERROR(nvfp4_detail::CheckGlobalScale(x, name));
  }
  for (const auto& [name, view] : store.all()) {
    if (!EndsWith(name, ".weight_packed")) continue;
    const std::string m = Stem(name, ".weight_packed");
    for (const char* part : {".weight_scale", ".weight_global_scale"}) {
      if (!store.Find(m + part)) return MakeError("checkpoint is missing tensor '", m, part, "'");
    }
    const TensorView* scales = store.Find(m + ".weight_scale");
    GS_RETURN_IF_ERROR(nvfp4_detail::CheckCodesAndScales(*view, *scales, m, view->shape.size() == 2 ? view->shape[0] : -1,
                                                         view->shape.size() == 2 ? view->shape[1] * 2 : -1));
    pages.Read(scales->nbytes);
  }
  pages.Release();
  return Ok();
}

}  // namespace

Status ConvertCompressedTensorsToModelopt(const ConvertOptions& o) {
  GS_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(o.from));
  GS_ASSIGN_OR_RETURN(QuantizationInfo quant, LoadQuantizationInfo(o.from));
  if (quant.method != QuantMethod::kCompressedTensors) {
    return MakeError(o.from, " is ", QuantMethodName(quant.method),
                     ", not compressed-tensors NVFP4: convert takes a compressed-tensors checkpoint");
  }
  GS_ASSIGN_OR_RETURN(TensorStore opened, TensorStore::OpenDirectory(o.from));
  auto store = std::make_shared<const TensorStore>(std::move(opened));
  // Checking scans every block scale; the pages it reads are released as it goes.
  GS_ASSIGN_OR_RETURN(Gemma4Weights weights,
                      BindGemma4Weights(config, store, quant, [&] { store->ReleasePages(); }));
  GS_RETURN_IF_ERROR(ValidateScales(*store));
  GS_ASSIGN_OR_RETURN(std::vector<OutputTensor> tensors, PlanTensors(*store));

  const ModeloptDeclaration declaration{"gemmaserve convert", /*activations=*/true,
                                        ModeloptExcludeModules(weights.prefix)};
  GS_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Begin(o.to, o.overwrite));
  GS_RETURN_IF_ERROR(writer->WriteTensors(tensors, o.max_shard_bytes, "converting", store.get()));
  GS_RETURN_IF_ERROR(WriteModeloptMetadata(o.from, declaration, writer.get()));
  return writer->Commit();
}

}  // namespace gs
