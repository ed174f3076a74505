#include "runtime/cuda/device_model.h"

#include <cmath>
#include <cstring>

#include "runtime/cuda/nvfp4_repack.h"
#include "util/numeric_formats.h"
#include "util/thread_pool.h"

namespace gs::cuda {
namespace {

// Offsets of the layer's fp32 vectors inside DeviceLayer::vecs, in this order.
struct VecLayout {
  int64_t hidden, head_dim, experts;
  int64_t size() const { return 7 * hidden + 2 * head_dim + head_dim / 2 + hidden + experts; }
};

void BindVectors(DeviceLayer& L, const VecLayout& v) {
  const float* base = L.vecs.get<float>();
  const float** norms[7] = {&L.input_norm, &L.post_attn, &L.pre_ffn, &L.post1,
                            &L.pre_ffn_2, &L.post2, &L.post};
  for (int i = 0; i < 7; ++i) *norms[i] = base + i * v.hidden;
  const float* p = base + 7 * v.hidden;
  L.q_norm = p;
  L.k_norm = p + v.head_dim;
  L.inv_freq = p + 2 * v.head_dim;
  L.router_scale = L.inv_freq + v.head_dim / 2;
  L.per_expert_scale = L.router_scale + v.hidden;
}

// Host copies of the fp32 vectors; a missing one (no MoE block) is left at `fill`.
Status AppendVector(std::vector<float>& out, const std::vector<float>& v, int64_t n, float fill,
                    const char* what, int layer) {
  if (!v.empty() && static_cast<int64_t>(v.size()) != n) {
    return MakeError("layer ", layer, " ", what, ": ", v.size(), " values, expected ", n);
  }
  if (v.empty()) out.insert(out.end(), static_cast<size_t>(n), fill);
  else out.insert(out.end(), v.begin(), v.end());
  return Ok();
}

// BF16 weights as they are. With `dequantize_nvfp4` (attention projections: compressed-tensors
// checkpoints quantize them too), NVFP4 weights are dequantized to bf16 once on the host, each
// value e2m1 × e4m3 × global scale computed in fp32 and rounded once — what `gemmaserve convert`
// writes for these tensors, so both paths run the same bf16 attention.
Status UploadBf16(DeviceBuffer& buf, const QuantizedLinear& w, int64_t rows, int64_t cols,
                  bool dequantize_nvfp4 = false) {
  if (w.format != WeightFormat::kBf16 && !(dequantize_nvfp4 && w.format == WeightFormat::kNvfp4)) {
    return MakeError(w.name, ": the CUDA runner needs BF16 here, got ", WeightFormatName(w.format));
  }
  if (w.rows != rows || w.cols != cols) {
    return MakeError(w.name, ": shape [", w.rows, ", ", w.cols, "], expected [", rows, ", ", cols, "]");
  }
  if (w.format == WeightFormat::kBf16) {
    return buf.Upload(w.data, static_cast<size_t>(rows * cols * 2), w.name.c_str());
  }
  std::vector<uint16_t> host(static_cast<size_t>(rows * cols));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t n = 0; n < rows; ++n) {
    w.DequantizeRowUnscaled(n, row.data());
    for (int64_t k = 0; k < cols; ++k) {
      host[static_cast<size_t>(n * cols + k)] = FloatToBf16(row[static_cast<size_t>(k)] * w.global_scale);
    }
  }
  return buf.Upload(host.data(), host.size() * 2, w.name.c_str());
}

}  // namespace

Status UploadBf16Linear(DeviceBuffer& buf, const QuantizedLinear& w, int64_t rows, int64_t cols) {
  return UploadBf16(buf, w, rows, cols);
}

namespace {

// Packs `banks` matrices (each GLU gate/up or a single linear) into one device allocation, the
// intermediate width (GLU: rows of each half; down: columns) zero-padded to `inter`
// (nvfp4_repack.h PackedWidth).
Status UploadPacked(DevicePacked& dp, const std::vector<const QuantizedLinear*>& first,
                    const std::vector<const QuantizedLinear*>& second, int64_t inter,
                    ThreadPool& pool) {
  const bool glu = !second.empty();
  const QuantizedLinear& w0 = *first[0];
  const int64_t rows = glu ? 2 * inter : w0.rows, cols = glu ? w0.cols : inter;
  for (size_t b = 0; b < first.size(); ++b) {
    for (const QuantizedLinear* w : {first[b], glu ? second[b] : first[b]}) {
      GS_RETURN_IF_ERROR(CheckPackable(*w, glu, glu ? inter : w->rows, cols));
      if (w->format != w0.format || w->rows != w0.rows || w->cols != w0.cols) {
        return MakeError(w->name, ": [", w->rows, ", ", w->cols, "] ", WeightFormatName(w->format),
                         " differs from ", w0.name, " [", w0.rows, ", ", w0.cols, "] ",
                         WeightFormatName(w0.format));
      }
    }
  }
  const int64_t code_bytes = PackedCodeBytes(w0.format, rows, cols);
  const int64_t scale_bytes = PackedScaleBytes(w0.format, rows, cols);
  const size_t banks = first.size();
  std::vector<uint8_t> codes(banks * code_bytes), scales(banks * scale_bytes);
  std::vector<float> gs;
  const bool fp4 = w0.format == WeightFormat::kNvfp4;
  for (size_t b = 0; b < banks; ++b) {
    if (glu) {
      gs.push_back(fp4 ? first[b]->global_scale * kNvfp4DequantOffset : 1.0f);
      gs.push_back(fp4 ? second[b]->global_scale * kNvfp4DequantOffset : 1.0f);
    } else {
      gs.push_back(fp4 ? first[b]->global_scale * kNvfp4DequantOffset : 1.0f);
    }
  }
  std::vector<Status> packed(banks);
  pool.ParallelFor(static_cast<int64_t>(banks), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      uint8_t* c = codes.data() + b * code_bytes;
      uint8_t* s = fp4 ? scales.data() + b * scale_bytes : nullptr;
      packed[b] = glu ? PackGlu(*first[b], *second[b], inter, c, s)
                      : PackLinear(*first[b], inter, c, s);
    }
  });
  for (const Status& st : packed) GS_RETURN_IF_ERROR(st);
  GS_RETURN_IF_ERROR(dp.codes.Upload(codes.data(), codes.size(), w0.name.c_str()));
  GS_RETURN_IF_ERROR(dp.scales.Upload(scales.data(), scales.size(), w0.name.c_str()));
  GS_RETURN_IF_ERROR(dp.global_scales.Upload(gs.data(), gs.size() * sizeof(float), "global scales"));
  dp.banks = static_cast<int>(banks);
  dp.bytes_per_bank = code_bytes + scale_bytes;
  dp.view = PackedMatrix{fp4 ? PackedFormat::kNvfp4 : PackedFormat::kBf16,
                         dp.codes.get<uint8_t>(), dp.scales.get<uint8_t>(), code_bytes, scale_bytes,
                         dp.global_scales.get<float>(), static_cast<int>(rows),
                         static_cast<int>(cols)};
  return Ok();
}

int64_t Bytes(const DeviceBuffer& b) { return static_cast<int64_t>(b.bytes()); }

// Replaces the bf16 contents of `buf` by their fp32 widening (the router runs in fp32).
Status WidenToF32(DeviceBuffer& buf, const char* what) {
  const int64_t n = Bytes(buf) / 2;
  DeviceBuffer wide;
  GS_RETURN_IF_ERROR(wide.Allocate(static_cast<size_t>(n) * sizeof(float), what));
  GS_RETURN_IF_ERROR(LaunchBf16ToF32(buf.get<bf16>(), n, wide.get<float>(), nullptr));
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  buf = std::move(wide);
  return Ok();
}

int64_t LayerBytes(const DeviceLayer& L) {
  return Bytes(L.qkv) + Bytes(L.o) + Bytes(L.router) + Bytes(L.router_h) + Bytes(L.vecs) +
         Bytes(L.mlp_gate_up.codes) +
         Bytes(L.mlp_gate_up.scales) + Bytes(L.mlp_down.codes) + Bytes(L.mlp_down.scales) +
         Bytes(L.expert_gate_up.codes) + Bytes(L.expert_gate_up.scales) +
         Bytes(L.expert_down.codes) + Bytes(L.expert_down.scales);
}

// Extends L.o by the folded router's C rows and builds router_h (router_fold.cu), when the
// fold serves this shape; L.o and L.router as uploaded, the vectors bound.
Status FoldRouter(const ModelConfig& config, DeviceLayer& L) {
  const int H = config.hidden_size, E = config.num_experts;
  if (!config.enable_moe_block || !RouterFoldServes(H, E, config.top_k_experts)) return Ok();
  const size_t o_bytes = static_cast<size_t>(H) * L.q_rows * 2;
  DeviceBuffer o;
  GS_RETURN_IF_ERROR(o.Allocate(o_bytes + static_cast<size_t>(2 * E) * L.q_rows * 2,
                                "o projection with the folded router"));
  GS_RETURN_IF_ERROR(L.router_h.Allocate(static_cast<size_t>(E) * H * sizeof(float),
                                         "folded router"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(o.get(), L.o.get(), o_bytes, cudaMemcpyDeviceToDevice));
  GS_RETURN_IF_ERROR(LaunchRouterFold(L.router.get<float>(), L.router_scale, L.post_attn,
                                      L.o.get<bf16>(), E, H, L.q_rows, L.router_h.get<float>(),
                                      o.get<bf16>() + static_cast<size_t>(H) * L.q_rows, nullptr));
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  L.o = std::move(o);
  L.router_folded = true;
  return Ok();
}

void SetAttentionShape(const ModelConfig& config, int l, DeviceLayer& L) {
  L.lc = config.layers[static_cast<size_t>(l)];
  L.q_rows = config.num_heads * L.lc.head_dim;
  L.k_rows = L.lc.num_kv_heads * L.lc.head_dim;
  L.v_rows = L.lc.k_eq_v ? 0 : L.k_rows;
}

}  // namespace

int64_t DeviceModel::StepWeightBytes(const ModelConfig& config,
                                     const std::vector<int>& active_experts, bool folded) const {
  int64_t bytes = Bytes(embed);  // tied lm_head: every row is read
  for (size_t l = 0; l < layers.size(); ++l) {
    const DeviceLayer& L = layers[l];
    // Unfolded: W_o alone and the router; folded: W_o with the C rows, and router_h.
    const int64_t o_plain = int64_t{2} * config.hidden_size * L.q_rows;
    const bool f = folded && L.router_folded;
    bytes += Bytes(L.qkv) + (f ? Bytes(L.o) : o_plain) + Bytes(f ? L.router_h : L.router) +
             Bytes(L.vecs);
    bytes += L.mlp_gate_up.bytes_per_bank + L.mlp_down.bytes_per_bank;
    if (config.enable_moe_block && l < active_experts.size()) {
      bytes += active_experts[l] * (L.expert_gate_up.bytes_per_bank + L.expert_down.bytes_per_bank);
    }
  }
  return bytes;
}

Expected<DeviceModel> UploadModel(const ModelConfig& config, const Gemma4Weights& weights) {
  DeviceModel m;
  const int64_t H = config.hidden_size;
  GS_RETURN_IF_ERROR(UploadBf16(m.embed, weights.embed, config.vocab_size, H));
  GS_RETURN_IF_ERROR(m.final_norm.Upload(weights.final_norm.data(),
                                         weights.final_norm.size() * sizeof(float), "final norm"));
  if (static_cast<int64_t>(weights.final_norm.size()) != H) {
    return MakeError("final norm has ", weights.final_norm.size(), " values, expected ", H);
  }
  ThreadPool pool(0);
  m.layers.resize(static_cast<size_t>(config.num_layers));
  for (int l = 0; l < config.num_layers; ++l) {
    const LayerWeights& w = weights.layers[static_cast<size_t>(l)];
    DeviceLayer& L = m.layers[static_cast<size_t>(l)];
    SetAttentionShape(config, l, L);
    const int64_t d = L.lc.head_dim;
    // q, k (and v) stacked into one [q_rows + k_rows + v_rows, H] matrix: one GEMM per layer.
    const int64_t qkv_rows = L.q_rows + L.k_rows + L.v_rows;
    GS_RETURN_IF_ERROR(L.qkv.Allocate(static_cast<size_t>(qkv_rows * H * 2), "qkv"));
    int64_t row = 0;
    for (const QuantizedLinear* p : {&w.attn.q, &w.attn.k, &w.attn.v}) {
      const int64_t rows = p == &w.attn.q ? L.q_rows : p == &w.attn.k ? L.k_rows : L.v_rows;
      if (rows == 0) continue;
      DeviceBuffer tmp;
      GS_RETURN_IF_ERROR(UploadBf16(tmp, *p, rows, H, /*dequantize_nvfp4=*/true));
      GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(L.qkv.get<uint8_t>() + row * H * 2, tmp.get(),
                                         static_cast<size_t>(rows * H * 2),
                                         cudaMemcpyDeviceToDevice));
      row += rows;
    }
    GS_RETURN_IF_ERROR(UploadBf16(L.o, w.attn.o, H, L.q_rows, /*dequantize_nvfp4=*/true));

    const VecLayout layout{H, d, config.enable_moe_block ? config.num_experts : 0};
    std::vector<float> vecs;
    const std::vector<float>* norms[7] = {&w.input_norm, &w.post_attn_norm, &w.pre_ffn_norm,
                                          &w.post_ffn_norm_1, &w.pre_ffn_norm_2,
                                          &w.post_ffn_norm_2, &w.post_ffn_norm};
    const char* norm_names[7] = {"input_layernorm", "post_attention_layernorm",
                                 "pre_feedforward_layernorm", "post_feedforward_layernorm_1",
                                 "pre_feedforward_layernorm_2", "post_feedforward_layernorm_2",
                                 "post_feedforward_layernorm"};
    for (int i = 0; i < 7; ++i) {
      GS_RETURN_IF_ERROR(AppendVector(vecs, *norms[i], H, 1.0f, norm_names[i], l));
    }
    GS_RETURN_IF_ERROR(AppendVector(vecs, w.attn.q_norm, d, 1.0f, "q_norm", l));
    GS_RETURN_IF_ERROR(AppendVector(vecs, w.attn.k_norm, d, 1.0f, "k_norm", l));
    const std::vector<float> inv = L.lc.rope.InverseFrequencies(static_cast<int>(d));
    vecs.insert(vecs.end(), inv.begin(), inv.end());
    GS_RETURN_IF_ERROR(AppendVector(vecs, w.router_scale, H, 1.0f, "router.scale", l));
    GS_RETURN_IF_ERROR(AppendVector(vecs, config.enable_moe_block ? w.per_expert_scale
                                                                  : std::vector<float>(),
                                    layout.experts, 1.0f, "router.per_expert_scale", l));
    GS_RETURN_IF_ERROR(L.vecs.Upload(vecs.data(), vecs.size() * sizeof(float), "layer vectors"));
    BindVectors(L, layout);
    L.layer_scalar = w.layer_scalar;

    const int64_t dense_inter = PackedWidth(config.intermediate_size);
    GS_RETURN_IF_ERROR(UploadPacked(L.mlp_gate_up, {&w.mlp_gate}, {&w.mlp_up}, dense_inter, pool));
    GS_RETURN_IF_ERROR(UploadPacked(L.mlp_down, {&w.mlp_down}, {}, dense_inter, pool));
    if (config.enable_moe_block) {
      GS_RETURN_IF_ERROR(UploadBf16(L.router, w.router, config.num_experts, H));
      GS_RETURN_IF_ERROR(WidenToF32(L.router, "router (fp32)"));
      std::vector<const QuantizedLinear*> gate, up, down;
      for (const ExpertWeights& e : w.experts.experts) {
        gate.push_back(&e.gate);
        up.push_back(&e.up);
        down.push_back(&e.down);
      }
      if (static_cast<int>(gate.size()) != config.num_experts) {
        return MakeError("layer ", l, ": ", gate.size(), " experts, config says ",
                         config.num_experts);
      }
      const int64_t moe_inter = PackedWidth(config.moe_intermediate_size);
      GS_RETURN_IF_ERROR(UploadPacked(L.expert_gate_up, gate, up, moe_inter, pool));
      GS_RETURN_IF_ERROR(UploadPacked(L.expert_down, down, {}, moe_inter, pool));
      GS_RETURN_IF_ERROR(FoldRouter(config, L));
    }
    m.total_bytes += LayerBytes(L);
  }
  m.total_bytes += Bytes(m.embed);
  return m;
}

namespace {

// Random packed NVFP4 matrices whose dequantized values have roughly a 1/√K standard deviation:
// e2m1 codes have an RMS of ~2.93 and block scales are log-uniform in [1, 4) (mean ~2.2).
Status FillPacked(DevicePacked& dp, int banks, int64_t rows, int64_t cols, bool glu,
                  uint64_t seed) {
  const int64_t code_bytes = rows * cols / 2, scale_bytes = rows * cols / 16;
  GS_RETURN_IF_ERROR(dp.codes.Allocate(static_cast<size_t>(banks * code_bytes), "dummy codes"));
  GS_RETURN_IF_ERROR(dp.scales.Allocate(static_cast<size_t>(banks * scale_bytes), "dummy scales"));
  GS_RETURN_IF_ERROR(LaunchFillNvfp4(dp.codes.get<uint8_t>(), banks * code_bytes,
                                     dp.scales.get<uint8_t>(), banks * scale_bytes, 1.0f, 4.0f,
                                     seed, nullptr));
  const float g = 1.0f / (2.93f * 2.2f * std::sqrt(static_cast<float>(cols)));
  std::vector<float> gs(static_cast<size_t>(banks) * (glu ? 2 : 1), g * kNvfp4DequantOffset);
  GS_RETURN_IF_ERROR(dp.global_scales.Upload(gs.data(), gs.size() * sizeof(float), "scales"));
  dp.banks = banks;
  dp.bytes_per_bank = code_bytes + scale_bytes;
  dp.view = PackedMatrix{PackedFormat::kNvfp4, dp.codes.get<uint8_t>(), dp.scales.get<uint8_t>(),
                         code_bytes, scale_bytes, dp.global_scales.get<float>(),
                         static_cast<int>(rows), static_cast<int>(cols)};
  return Ok();
}

Status FillBf16(DeviceBuffer& buf, int64_t rows, int64_t cols, float stddev, uint64_t seed) {
  GS_RETURN_IF_ERROR(buf.Allocate(static_cast<size_t>(rows * cols * 2), "dummy bf16"));
  return LaunchFillBf16(buf.get<bf16>(), rows * cols, stddev, seed, nullptr);
}

}  // namespace

Expected<DeviceModel> MakeDummyModel(const ModelConfig& config, uint64_t seed) {
  DeviceModel m;
  const int64_t H = config.hidden_size;
  if (H % 64 != 0) {
    return MakeError("dummy model: hidden size ", H, " is not a multiple of 64 (packed GEMM)");
  }
  // Random weights fill the padded widths too: a dummy model of an odd width is one of the
  // padded width (only its speed matters).
  const int64_t dense_inter = PackedWidth(config.intermediate_size);
  const int64_t moe_inter = PackedWidth(config.moe_intermediate_size);
  GS_RETURN_IF_ERROR(FillBf16(m.embed, config.vocab_size, H, 0.03f, seed + 1));
  std::vector<float> ones(static_cast<size_t>(H), 1.0f);
  GS_RETURN_IF_ERROR(m.final_norm.Upload(ones.data(), ones.size() * sizeof(float), "final norm"));
  m.layers.resize(static_cast<size_t>(config.num_layers));
  for (int l = 0; l < config.num_layers; ++l) {
    DeviceLayer& L = m.layers[static_cast<size_t>(l)];
    SetAttentionShape(config, l, L);
    const uint64_t s = seed + 1000 * static_cast<uint64_t>(l + 1);
    const int64_t d = L.lc.head_dim;
    const float inv_sqrt_h = 1.0f / std::sqrt(static_cast<float>(H));
    GS_RETURN_IF_ERROR(FillBf16(L.qkv, L.q_rows + L.k_rows + L.v_rows, H, inv_sqrt_h, s + 1));
    GS_RETURN_IF_ERROR(
        FillBf16(L.o, H, L.q_rows, 1.0f / std::sqrt(static_cast<float>(L.q_rows)), s + 2));
    const VecLayout layout{H, d, config.enable_moe_block ? config.num_experts : 0};
    std::vector<float> vecs(static_cast<size_t>(layout.size()), 1.0f);
    const std::vector<float> inv = L.lc.rope.InverseFrequencies(static_cast<int>(d));
    std::copy(inv.begin(), inv.end(), vecs.begin() + 7 * H + 2 * d);
    GS_RETURN_IF_ERROR(L.vecs.Upload(vecs.data(), vecs.size() * sizeof(float), "layer vectors"));
    BindVectors(L, layout);
    GS_RETURN_IF_ERROR(FillPacked(L.mlp_gate_up, 1, 2 * dense_inter, H, true, s + 3));
    GS_RETURN_IF_ERROR(FillPacked(L.mlp_down, 1, H, dense_inter, false, s + 4));
    if (config.enable_moe_block) {
      GS_RETURN_IF_ERROR(FillBf16(L.router, config.num_experts, H, inv_sqrt_h, s + 5));
      GS_RETURN_IF_ERROR(WidenToF32(L.router, "router (fp32)"));
      GS_RETURN_IF_ERROR(FillPacked(L.expert_gate_up, config.num_experts,
                                    2 * moe_inter, H, true, s + 6));
      GS_RETURN_IF_ERROR(FillPacked(L.expert_down, config.num_experts, H, moe_inter, false,
                                    s + 7));
      GS_RETURN_IF_ERROR(FoldRouter(config, L));
    }
    m.total_bytes += LayerBytes(L);
  }
  m.total_bytes += Bytes(m.embed);
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return m;
}

}  // namespace gs::cuda
