#include "tools/inspect.h"

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/quant_config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "util/numeric_formats.h"
#include "util/progress.h"

namespace gs {
namespace {

using nlohmann::json;

const char* GroupOf(const std::string& name) {
  if (name.find("vision_tower") != std::string::npos) return "vision tower";
  if (name.find("embed_vision") != std::string::npos) return "vision embedder";
  if (name.find("audio") != std::string::npos) return "audio";
  if (name.find(".self_attn.") != std::string::npos) {
    return name.find("_norm") != std::string::npos ? "norms and scalars" : "attention";
  }
  if (name.find(".router.") != std::string::npos) return "router";
  if (name.find(".experts.") != std::string::npos) return "experts";
  if (name.find(".mlp.") != std::string::npos) return "dense MLP";
  if (name.find("embed_tokens") != std::string::npos) return "embedding / tied lm_head";
  if (name.find("lm_head") != std::string::npos) return "lm_head";
  if (name.find("norm") != std::string::npos || name.find("layer_scalar") != std::string::npos) {
    return "norms and scalars";
  }
  return "other";
}

bool IsPackedCodes(const std::string& name, const TensorView& v) {
  return (v.dtype == DType::kU8) && (name.ends_with(".weight") || name.ends_with(".weight_packed"));
}

bool IsScale(const std::string& name) {
  return name.ends_with("_scale") || name.ends_with("_scale_2") || name.ends_with("global_scale");
}

float ScalarF32(const TensorView& v) {
  float x = NAN;
  if (v.dtype == DType::kF32 && v.nbytes >= 4) std::memcpy(&x, v.data, 4);
  return x;
}

// Counts non-finite values of a float tensor.
int64_t NonFinite(const TensorView& v) {
  int64_t bad = 0;
  const int64_t n = v.numel();
  for (int64_t i = 0; i < n; ++i) {
    float x;
    if (v.dtype == DType::kBF16 || v.dtype == DType::kF16) {
      uint16_t b;
      std::memcpy(&b, v.data + 2 * i, 2);
      x = v.dtype == DType::kBF16 ? Bf16ToFloat(b) : Fp16ToFloat(b);
    } else if (v.dtype == DType::kF32) {
      std::memcpy(&x, v.data + 4 * i, 4);
    } else if (v.dtype == DType::kF8E4M3) {
      x = E4m3ToFloat(v.data[i]);
    } else {
      return 0;
    }
    bad += !std::isfinite(x);
  }
  return bad;
}

class Inspector {
 public:
  Inspector(const TensorStore& store, const InspectOptions& o) : store_(store), o_(o) {}

  void Run(json* report) {
    std::map<std::string, json> groups;
    ProgressBar bar("scanning", store_.total_bytes(), "B");
    for (const auto& [name, v] : store_.all()) {
      json& g = groups[GroupOf(name)];
      if (g.is_null()) g = {{"parameters", int64_t{0}}, {"bytes", uint64_t{0}}, {"formats", json::object()}};
      const int64_t params = IsScale(name) ? 0 : (IsPackedCodes(name, *v) ? v->numel() * 2 : v->numel());
      g["parameters"] = g.value("parameters", int64_t{0}) + params;
      g["bytes"] = g.value("bytes", uint64_t{0}) + v->nbytes;
      if (!IsScale(name)) {
        const std::string fmt = IsPackedCodes(name, *v) ? "nvfp4" : DTypeName(v->dtype);
        g["formats"][fmt] = g["formats"].value(fmt, 0) + 1;
      }
      CheckTensor(name, *v);
      bar.Advance(v->nbytes);
    }
    bar.Finish();
    CheckGateUpScales();
    (*report)["groups"] = groups;
    (*report)["findings"] = findings_;
    (*report)["gate_up_scale_pairs"] = {{"pairs", pairs_}, {"mismatched", mismatched_},
                                        {"worst_ratio", worst_ratio_}};
  }

 private:
  void Find(const std::string& severity, const std::string& what) {
    findings_.push_back({{"severity", severity}, {"message", what}});
  }

  void CheckTensor(const std::string& name, const TensorView& v) {
    if (name.ends_with("weight_scale_2") || name.ends_with("weight_global_scale")) {
      const float x = ScalarF32(v);
      if (!(std::isfinite(x) && x > 0)) Find("error", StrCat("global scale '", name, "' = ", x, " (must be finite and > 0)"));
      return;
    }
    if (name.ends_with("input_scale") || name.ends_with("input_global_scale")) {
      const float x = ScalarF32(v);
      if (!(std::isfinite(x) && x > 0)) Find("warning", StrCat("activation scale '", name, "' = ", x, " (unusable for W4A4; ignored on Hopper)"));
      return;
    }
    if (v.dtype == DType::kF8E4M3) {
      int64_t nan = 0, negative = 0, zero = 0;
      for (size_t i = 0; i < v.nbytes; ++i) {
        nan += E4m3IsNan(v.data[i]);
        negative += (v.data[i] & 0x80) && (v.data[i] & 0x7f);
        zero += (v.data[i] & 0x7f) == 0;
      }
      if (nan) Find("error", StrCat("block scales '", name, "': ", nan, " NaN"));
      if (negative) Find("warning", StrCat("block scales '", name, "': ", negative, " negative"));
      if (zero) Find("info", StrCat("block scales '", name, "': ", zero, " zero (blocks of zeros)"));
      return;
    }
    if (o_.scan_values) {
      const int64_t bad = NonFinite(v);
      if (bad) Find("error", StrCat("tensor '", name, "': ", bad, " NaN/Inf values"));
    }
  }

  // Gate and up of one MLP/expert may carry different global scales; gemmaserve keeps both, but
  // engines that merge them with max() mis-scale one half (reference nvfp4 §4.3).
  void CheckGateUpScales() {
    for (const auto& [name, v] : store_.all()) {
      const std::string suffix = name.ends_with("gate_proj.weight_scale_2") ? "weight_scale_2"
                                 : name.ends_with("gate_proj.weight_global_scale") ? "weight_global_scale" : "";
      if (suffix.empty()) continue;
      const std::string up = name.substr(0, name.size() - suffix.size() - 10) + "up_proj." + suffix;
      const TensorView* u = store_.Find(up);
      if (!u) continue;
      const float a = ScalarF32(*v), b = ScalarF32(*u);
      ++pairs_;
      if (a != b && a > 0 && b > 0) {
        ++mismatched_;
        worst_ratio_ = std::max(worst_ratio_, static_cast<double>(std::max(a, b) / std::min(a, b)));
      }
    }
    if (mismatched_) {
      Find("info", StrCat(mismatched_, " of ", pairs_, " gate/up pairs have different global scales "
                          "(worst ratio ", worst_ratio_, "); gemmaserve applies each separately"));
    }
  }

  const TensorStore& store_;
  const InspectOptions& o_;
  json findings_ = json::array();
  int pairs_ = 0, mismatched_ = 0;
  double worst_ratio_ = 1.0;
};

json KvReport(const ModelConfig& c, const InspectOptions& o) {
  json layers = json::object();
  int64_t per_token_short = 0, total = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerConfig& lc = c.layers[static_cast<size_t>(l)];
    const int64_t b = c.KvBytesPerToken(l, o.kv_bytes_per_element);
    const bool sliding = lc.kind == LayerKind::kSliding;
    const char* kind = sliding ? "sliding" : "global";
    json& k = layers[kind];
    if (k.is_null()) k = {{"layers", 0}};
    k["layers"] = k.value("layers", 0) + 1;
    k["bytes_per_token_per_layer"] = b;
    per_token_short += b;
    total += b * (sliding ? std::min<int64_t>(o.max_model_len, c.sliding_window) : o.max_model_len);
  }
  return {{"by_layer_type", layers},
          {"bytes_per_token_within_window", per_token_short},
          {"bytes_per_sequence_at_max_model_len", total},
          {"max_model_len", o.max_model_len},
          {"element_bytes", o.kv_bytes_per_element}};
}

}  // namespace

namespace {

Expected<json> Inspect(const InspectOptions& o) {
  GS_ASSIGN_OR_RETURN(std::string dir, ResolveModelPath(o.path));
  GS_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  GS_ASSIGN_OR_RETURN(QuantizationInfo quant, LoadQuantizationInfo(dir));
  GS_ASSIGN_OR_RETURN(TensorStore opened, TensorStore::OpenDirectory(dir));
  auto store = std::make_shared<const TensorStore>(std::move(opened));
  json report;
  report["path"] = dir;
  report["architecture"] = config.architecture;
  report["quantization"] = {{"method", QuantMethodName(quant.method)}, {"quant_algo", quant.quant_algo},
                            {"declared_in", quant.source}, {"ignore", quant.ignore}};
  report["geometry"] = {{"hidden_size", config.hidden_size}, {"layers", config.num_layers},
                        {"sliding_layers", config.num_layers_of(LayerKind::kSliding)},
                        {"global_layers", config.num_layers_of(LayerKind::kGlobal)},
                        {"experts", config.num_experts}, {"top_k", config.top_k_experts},
                        {"vocab_size", config.vocab_size}, {"sliding_window", config.sliding_window}};
  Inspector(*store, o).Run(&report);
  auto weights = BindGemma4Weights(config, store, quant);
  if (!weights.ok()) {
    report["findings"].push_back({{"severity", "error"}, {"message", weights.error().message}});
  } else {
    report["loads"] = weights->Describe();
  }
  report["kv_cache"] = KvReport(config, o);
  const uint64_t weight_bytes = store->total_bytes();
  const uint64_t kv = report["kv_cache"]["bytes_per_sequence_at_max_model_len"].get<uint64_t>();
  // Activations and workspace for a 8K-token prefill step are ~1-2 GB on the real model; 5% of
  // the weights plus 512 MB is the planning figure until the CUDA runner reports its own.
  const uint64_t workspace = weight_bytes / 20 + (512ull << 20);
  report["gpu_memory_estimate"] = {{"weights_bytes", weight_bytes}, {"kv_one_sequence_bytes", kv},
                                   {"workspace_bytes", workspace},
                                   {"total_bytes", weight_bytes + kv + workspace}};
  return report;
}

}  // namespace

Expected<json> InspectCheckpoint(const InspectOptions& o) {
  try {
    return Inspect(o);
  } catch (const std::exception& e) {  // a report field of an unexpected type: our bug, not a crash
    return MakeError("inspect ", o.path, ": ", e.what());
  }
}

std::string FormatInspectReport(const json& r) {
  std::ostringstream out;
  auto gb = [](uint64_t b) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1000 && u < 4) v /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", v, units[u]);
    return std::string(buf);
  };
  out << r["path"].get<std::string>() << "\n  architecture " << r["architecture"].get<std::string>()
      << ", quantization " << r["quantization"]["method"].get<std::string>();
  if (!r["quantization"]["quant_algo"].get<std::string>().empty()) {
    out << " (" << r["quantization"]["quant_algo"].get<std::string>() << ")";
  }
  out << "\n  " << r["geometry"].dump() << "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-26s %16s %12s  %s\n", "component", "parameters", "bytes", "formats");
  out << line;
  for (const auto& [group, g] : r["groups"].items()) {
    std::string fmts;
    for (const auto& [f, n] : g["formats"].items()) fmts += StrCat(f, " x", n.get<int>(), " ");
    std::snprintf(line, sizeof line, "  %-26s %16lld %12s  %s\n", group.c_str(),
                  static_cast<long long>(g["parameters"].get<int64_t>()),
                  gb(g["bytes"].get<uint64_t>()).c_str(), fmts.c_str());
    out << line;
  }
  const json& kv = r["kv_cache"];
  out << "\n  KV cache (" << (kv["element_bytes"].get<int>() == 1 ? "fp8" : "bf16") << "):\n";
  for (const auto& [kind, k] : kv["by_layer_type"].items()) {
    out << "    " << kind << ": " << k["layers"].get<int>() << " layers x "
        << k["bytes_per_token_per_layer"].get<int64_t>() << " B/token"
        << (kind == "sliding" ? " (capped at the window)" : "") << "\n";
  }
  const json& mem = r["gpu_memory_estimate"];
  out << "    one sequence of " << kv["max_model_len"].get<int64_t>() << " tokens: "
      << gb(kv["bytes_per_sequence_at_max_model_len"].get<uint64_t>()) << "\n\n  GPU memory estimate: weights "
      << gb(mem["weights_bytes"].get<uint64_t>()) << " + KV " << gb(mem["kv_one_sequence_bytes"].get<uint64_t>())
      << " + workspace " << gb(mem["workspace_bytes"].get<uint64_t>()) << " = "
      << gb(mem["total_bytes"].get<uint64_t>()) << "\n";
  if (r.contains("loads")) out << "  loads as " << r["loads"].get<std::string>() << "\n";
  out << "\n  findings: " << (r["findings"].empty() ? "none" : "") << "\n";
  for (const auto& f : r["findings"]) {
    out << "    [" << f["severity"].get<std::string>() << "] " << f["message"].get<std::string>() << "\n";
  }
  return out.str();
}

}  // namespace gs
