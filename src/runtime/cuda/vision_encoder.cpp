#include "runtime/cuda/vision_encoder.h"

#include <algorithm>
#include <cmath>

#include "runtime/cpu/cpu_vision.h"
#include "runtime/cuda/device_model.h"
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

template <typename T>
T* Ptr(const DeviceBuffer& b) { return b.get<T>(); }

// Several BF16 linears of equal width stacked by rows into one matrix (one GEMM for all).
Status UploadStacked(DeviceBuffer& buf, const std::vector<const QuantizedLinear*>& parts,
                     int64_t rows_each, int64_t cols, const char* what) {
  const size_t part_bytes = static_cast<size_t>(rows_each * cols * 2);
  GS_RETURN_IF_ERROR(buf.Allocate(part_bytes * parts.size(), what));
  for (size_t i = 0; i < parts.size(); ++i) {
    DeviceBuffer tmp;
    GS_RETURN_IF_ERROR(UploadBf16Linear(tmp, *parts[i], rows_each, cols));
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(buf.get<uint8_t>() + i * part_bytes, tmp.get(), part_bytes,
                                       cudaMemcpyDeviceToDevice));
  }
  return Ok();
}

Status CheckVector(const std::vector<float>& v, int64_t n, const char* what, int layer) {
  if (static_cast<int64_t>(v.size()) == n) return Ok();
  return MakeError("vision layer ", layer, " ", what, ": ", v.size(), " values, expected ", n);
}

Status FillRandom(DeviceBuffer& buf, int64_t rows, int64_t cols, uint64_t seed) {
  GS_RETURN_IF_ERROR(buf.Allocate(static_cast<size_t>(rows * cols * 2), "dummy vision weights"));
  return LaunchFillBf16(buf.get<bf16>(), rows * cols,
                        1.0f / std::sqrt(static_cast<float>(cols)), seed, nullptr);
}

int64_t Bytes(const DeviceBuffer& b) { return static_cast<int64_t>(b.bytes()); }

}  // namespace

VisionEncoder::VisionEncoder(const ModelConfig& config) : config_(config), vc_(*config.vision) {}

VisionEncoder::~VisionEncoder() {
  if (stream_) cudaStreamDestroy(stream_);
}

Status VisionEncoder::Init() {
  const VisionConfig& vc = vc_;
  if (vc.hidden_size <= 0 || vc.num_layers <= 0 || vc.num_heads <= 0 || vc.head_dim % 4 != 0 ||
      vc.intermediate_size <= 0 || vc.pooling_kernel_size <= 0 ||
      vc.position_embedding_size <= 0) {
    return MakeError("vision_config: unsupported shapes (hidden ", vc.hidden_size, ", layers ",
                     vc.num_layers, ", heads ", vc.num_heads, ", head_dim ", vc.head_dim,
                     " (a multiple of 4 is needed), intermediate ", vc.intermediate_size, ")");
  }
  padded_dim_ = VisionPaddedHeadDim(vc.head_dim);
  if (padded_dim_ > 128 || padded_dim_ == 112) {
    return MakeError("vision_config.head_dim ", vc.head_dim, ": the CUDA vision attention takes "
                     "head dims up to 96, or 128");
  }
  GS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  return gemm_.Init();
}

Expected<std::unique_ptr<VisionEncoder>> VisionEncoder::Upload(const ModelConfig& config,
                                                               const VisionWeights& w) {
  if (!config.vision) return MakeError("the model has no vision_config: it takes no images");
  std::unique_ptr<VisionEncoder> e(new VisionEncoder(config));
  GS_RETURN_IF_ERROR(e->Init());
  const VisionConfig& vc = e->vc_;
  const int64_t H = vc.hidden_size, qd = int64_t{vc.num_heads} * vc.head_dim;
  const int64_t I = vc.intermediate_size, d = vc.head_dim;
  if (static_cast<int>(w.layers.size()) != vc.num_layers) {
    return MakeError("vision weights have ", w.layers.size(), " layers, vision_config ",
                     vc.num_layers);
  }
  const int64_t patch_dim = int64_t{vc.patch_size} * vc.patch_size * 3;
  GS_RETURN_IF_ERROR(UploadBf16Linear(e->patch_proj_, w.patch_proj, H, patch_dim));
  if (static_cast<int64_t>(w.position_table.size()) != 2 * vc.position_embedding_size * H) {
    return MakeError("vision position table: ", w.position_table.size(), " values, expected 2 × ",
                     vc.position_embedding_size, " × ", H);
  }
  GS_RETURN_IF_ERROR(e->positions_.Upload(w.position_table.data(),
                                          w.position_table.size() * sizeof(float),
                                          "vision position table"));
  e->layers_.resize(w.layers.size());
  for (int l = 0; l < vc.num_layers; ++l) {
    const VisionLayerWeights& lw = w.layers[static_cast<size_t>(l)];
    DeviceVisionLayer& L = e->layers_[static_cast<size_t>(l)];
    GS_RETURN_IF_ERROR(UploadStacked(L.qkv, {&lw.q, &lw.k, &lw.v}, qd, H, "vision qkv"));
    GS_RETURN_IF_ERROR(UploadBf16Linear(L.o, lw.o, H, qd));
    GS_RETURN_IF_ERROR(UploadStacked(L.gate_up, {&lw.gate, &lw.up}, I, H, "vision gate/up"));
    GS_RETURN_IF_ERROR(UploadBf16Linear(L.down, lw.down, H, I));
    std::vector<float> vecs;
    const std::vector<float>* norms[4] = {&lw.input_norm, &lw.post_attn_norm, &lw.pre_ffn_norm,
                                          &lw.post_ffn_norm};
    const char* names[4] = {"input_layernorm", "post_attention_layernorm",
                            "pre_feedforward_layernorm", "post_feedforward_layernorm"};
    for (int i = 0; i < 4; ++i) {
      GS_RETURN_IF_ERROR(CheckVector(*norms[i], H, names[i], l));
      vecs.insert(vecs.end(), norms[i]->begin(), norms[i]->end());
    }
    GS_RETURN_IF_ERROR(CheckVector(lw.q_norm, d, "q_norm", l));
    GS_RETURN_IF_ERROR(CheckVector(lw.k_norm, d, "k_norm", l));
    vecs.insert(vecs.end(), lw.q_norm.begin(), lw.q_norm.end());
    vecs.insert(vecs.end(), lw.k_norm.begin(), lw.k_norm.end());
    GS_RETURN_IF_ERROR(L.vecs.Upload(vecs.data(), vecs.size() * sizeof(float), "vision norms"));
  }
  std::vector<float> bias, scale;
  if (vc.standardize) {
    if (static_cast<int64_t>(w.std_bias.size()) != H ||
        static_cast<int64_t>(w.std_scale.size()) != H) {
      return MakeError("vision std_bias / std_scale: ", w.std_bias.size(), " / ",
                       w.std_scale.size(), " values, expected ", H);
    }
    bias = w.std_bias;
    scale = w.std_scale;
  }
  GS_RETURN_IF_ERROR(e->FinishUpload(bias, scale));
  GS_RETURN_IF_ERROR(UploadBf16Linear(e->projector_, w.projector, config.hidden_size, H));
  e->CountBytes();
  return e;
}

Expected<std::unique_ptr<VisionEncoder>> VisionEncoder::Random(const ModelConfig& config,
                                                               uint64_t seed) {
  if (!config.vision) return MakeError("the model has no vision_config: it takes no images");
  std::unique_ptr<VisionEncoder> e(new VisionEncoder(config));
  GS_RETURN_IF_ERROR(e->Init());
  const VisionConfig& vc = e->vc_;
  const int64_t H = vc.hidden_size, qd = int64_t{vc.num_heads} * vc.head_dim;
  const int64_t I = vc.intermediate_size, d = vc.head_dim, P = vc.position_embedding_size;
  GS_RETURN_IF_ERROR(FillRandom(e->patch_proj_, H, int64_t{vc.patch_size} * vc.patch_size * 3,
                                seed + 1));
  {
    DeviceBuffer table;  // bf16 values widened to fp32, as a checkpoint's table would be
    GS_RETURN_IF_ERROR(table.Allocate(static_cast<size_t>(2 * P * H * 2), "dummy positions"));
    GS_RETURN_IF_ERROR(LaunchFillBf16(table.get<bf16>(), 2 * P * H, 0.1f, seed + 2, nullptr));
    GS_RETURN_IF_ERROR(e->positions_.Allocate(static_cast<size_t>(2 * P * H * 4), "positions"));
    GS_RETURN_IF_ERROR(LaunchBf16ToF32(table.get<bf16>(), 2 * P * H, e->positions_.get<float>(),
                                       nullptr));
    GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  }
  e->layers_.resize(static_cast<size_t>(vc.num_layers));
  const std::vector<float> ones(static_cast<size_t>(4 * H + 2 * d), 1.0f);
  for (int l = 0; l < vc.num_layers; ++l) {
    DeviceVisionLayer& L = e->layers_[static_cast<size_t>(l)];
    const uint64_t s = seed + 100 * static_cast<uint64_t>(l + 1);
    GS_RETURN_IF_ERROR(FillRandom(L.qkv, 3 * qd, H, s + 1));
    GS_RETURN_IF_ERROR(FillRandom(L.o, H, qd, s + 2));
    GS_RETURN_IF_ERROR(FillRandom(L.gate_up, 2 * I, H, s + 3));
    GS_RETURN_IF_ERROR(FillRandom(L.down, H, I, s + 4));
    GS_RETURN_IF_ERROR(L.vecs.Upload(ones.data(), ones.size() * sizeof(float), "vision norms"));
  }
  std::vector<float> bias, scale;
  if (vc.standardize) {
    bias.assign(static_cast<size_t>(H), 0.0f);
    scale.assign(static_cast<size_t>(H), 1.0f);
  }
  GS_RETURN_IF_ERROR(e->FinishUpload(bias, scale));
  GS_RETURN_IF_ERROR(FillRandom(e->projector_, config.hidden_size, H, seed + 3));
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  e->CountBytes();
  return e;
}

// Binds each layer's vectors and uploads the tower-wide ones: inv_freq (each spatial axis gets
// head_dim/2 channels with its own full frequency range, as the CPU encoder), std_bias/std_scale.
Status VisionEncoder::FinishUpload(const std::vector<float>& std_bias,
                                   const std::vector<float>& std_scale) {
  const int64_t H = vc_.hidden_size, d = vc_.head_dim;
  for (DeviceVisionLayer& L : layers_) {
    const float* base = L.vecs.get<float>();
    L.input_norm = base;
    L.post_attn = base + H;
    L.pre_ffn = base + 2 * H;
    L.post_ffn = base + 3 * H;
    L.q_norm = base + 4 * H;
    L.k_norm = base + 4 * H + d;
  }
  RopeConfig rope;
  rope.theta = vc_.rope_theta;
  std::vector<float> globals = rope.InverseFrequencies(vc_.head_dim / 2);
  const size_t n_inv = globals.size();
  globals.insert(globals.end(), std_bias.begin(), std_bias.end());
  globals.insert(globals.end(), std_scale.begin(), std_scale.end());
  GS_RETURN_IF_ERROR(globals_.Upload(globals.data(), globals.size() * sizeof(float),
                                     "vision rope / standardisation"));
  inv_freq_ = globals_.get<float>();
  std_bias_ = std_bias.empty() ? nullptr : inv_freq_ + n_inv;
  std_scale_ = std_scale.empty() ? nullptr : inv_freq_ + n_inv + H;
  return Ok();
}

void VisionEncoder::CountBytes() {
  weight_bytes_ = Bytes(patch_proj_) + Bytes(positions_) + Bytes(globals_) + Bytes(projector_);
  for (const DeviceVisionLayer& L : layers_) {
    weight_bytes_ += Bytes(L.qkv) + Bytes(L.o) + Bytes(L.gate_up) + Bytes(L.down) + Bytes(L.vecs);
  }
}

// Host-side metadata of the pass (checked: nothing the kernels index can be out of range), then
// one upload of it and of the pixels.
Status VisionEncoder::Prepare(const std::vector<const ProcessedImage*>& images) {
  const int k = vc_.pooling_kernel_size, P = vc_.position_embedding_size;
  const int tile_rows = VisionAttentionTileRows();
  patches_ = soft_ = 0;
  soft_first_.assign(1, 0);
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i] == nullptr) return MakeError("vision encoder: image ", i, " is null");
    const Status st = cpu::CheckVisionInput(vc_, *images[i]);
    if (!st.ok()) {
      return MakeError("vision encoder: image ", i, " of ", images.size(), ": ",
                       st.error().message);
    }
    patches_ += images[i]->num_patches();
    soft_ += images[i]->num_soft_tokens;
    soft_first_.push_back(soft_);
  }
  std::vector<int> pos_x, pos_y, tiles, offsets(static_cast<size_t>(soft_) + 1, 0), members;
  pos_x.reserve(static_cast<size_t>(patches_));
  pos_y.reserve(static_cast<size_t>(patches_));
  members.resize(static_cast<size_t>(patches_));
  std::vector<int> slot_of(static_cast<size_t>(patches_));
  int base = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const ProcessedImage& img = *images[i];
    const int n = img.num_patches(), pooled_w = img.patches_w / k;
    for (int t = 0; t < n; ++t) {
      const int x = img.position_x[static_cast<size_t>(t)];
      const int y = img.position_y[static_cast<size_t>(t)];
      const int slot = x < 0 || y < 0 ? -1 : x / k + pooled_w * (y / k);
      if (x >= P || y >= P || slot < 0 || slot >= img.num_soft_tokens) {
        return MakeError("image ", i, ": patch ", t, " at (", x, ", ", y, ") is outside the ",
                         img.patches_w, "x", img.patches_h, " grid of ", img.num_soft_tokens,
                         " soft tokens or the position table (", P, ")");
      }
      pos_x.push_back(x);
      pos_y.push_back(y);
      const int global_slot = soft_first_[i] + slot;
      slot_of[static_cast<size_t>(base + t)] = global_slot;
      ++offsets[static_cast<size_t>(global_slot) + 1];
    }
    for (int q0 = 0; q0 < n; q0 += tile_rows) {
      tiles.insert(tiles.end(), {base, n, q0, std::min(tile_rows, n - q0)});
    }
    base += n;
  }
  for (int s = 0; s < soft_; ++s) offsets[static_cast<size_t>(s) + 1] += offsets[static_cast<size_t>(s)];
  std::vector<int> fill(offsets.begin(), offsets.end() - 1);
  for (int p = 0; p < patches_; ++p) {  // patch order inside each slot, as the CPU sums
    members[static_cast<size_t>(fill[static_cast<size_t>(slot_of[static_cast<size_t>(p)])]++)] = p;
  }
  tiles_ = static_cast<int>(tiles.size() / 4);

  std::vector<int> meta;
  meta.reserve(pos_x.size() * 4 + tiles.size() + offsets.size());
  const size_t o_tiles = 0;  // first: int4 loads need 16-byte alignment
  meta.insert(meta.end(), tiles.begin(), tiles.end());
  const size_t o_x = meta.size();
  meta.insert(meta.end(), pos_x.begin(), pos_x.end());
  const size_t o_y = meta.size();
  meta.insert(meta.end(), pos_y.begin(), pos_y.end());
  const size_t o_off = meta.size();
  meta.insert(meta.end(), offsets.begin(), offsets.end());
  const size_t o_mem = meta.size();
  meta.insert(meta.end(), members.begin(), members.end());
  GS_RETURN_IF_ERROR(meta_.Reserve(meta.size() * sizeof(int), "vision metadata"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(meta_.get(), meta.data(), meta.size() * sizeof(int),
                                          cudaMemcpyHostToDevice, stream_));
  const int* d = meta_.get<int>();
  tile_info_ = d + o_tiles;
  pos_x_ = d + o_x;
  pos_y_ = d + o_y;
  slot_offsets_ = d + o_off;
  slot_patches_ = d + o_mem;

  GS_RETURN_IF_ERROR(EnsureScratch());
  size_t at = 0;
  for (const ProcessedImage* img : images) {
    const size_t bytes = img->pixel_values.size() * sizeof(float);
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pixels_.get<uint8_t>() + at, img->pixel_values.data(),
                                            bytes, cudaMemcpyHostToDevice, stream_));
    at += bytes;
  }
  return Ok();
}

Status VisionEncoder::EnsureScratch() {
  const size_t N = static_cast<size_t>(patches_), S = static_cast<size_t>(soft_);
  const size_t H = static_cast<size_t>(vc_.hidden_size);
  const size_t qd = static_cast<size_t>(vc_.num_heads) * vc_.head_dim;
  const size_t qp = static_cast<size_t>(vc_.num_heads) * padded_dim_;
  const size_t I = static_cast<size_t>(vc_.intermediate_size);
  const size_t patch_dim = static_cast<size_t>(vc_.patch_size) * vc_.patch_size * 3;
  GS_RETURN_IF_ERROR(pixels_.Reserve(N * patch_dim * 4, "vision pixels"));
  GS_RETURN_IF_ERROR(x_pix_.Reserve(N * patch_dim * 2, "vision patch input"));
  GS_RETURN_IF_ERROR(h_.Reserve(N * H * 4, "vision residual"));
  GS_RETURN_IF_ERROR(x_.Reserve(N * H * 2, "vision normed input"));
  GS_RETURN_IF_ERROR(qkv_.Reserve(N * 3 * qd * 4, "vision qkv"));
  GS_RETURN_IF_ERROR(q_.Reserve(N * qp * 2, "vision q"));
  GS_RETURN_IF_ERROR(k_.Reserve(N * qp * 2, "vision k"));
  GS_RETURN_IF_ERROR(v_.Reserve(N * qp * 2, "vision v"));
  GS_RETURN_IF_ERROR(attn_.Reserve(N * qd * 2, "vision attention output"));
  GS_RETURN_IF_ERROR(a_.Reserve(N * H * 4, "vision projection output"));
  GS_RETURN_IF_ERROR(gate_up_.Reserve(N * 2 * I * 4, "vision gate/up"));
  GS_RETURN_IF_ERROR(inter_.Reserve(N * I * 2, "vision MLP intermediate"));
  GS_RETURN_IF_ERROR(pooled_.Reserve(S * H * 2, "vision pooled"));
  return soft_out_.Reserve(S * static_cast<size_t>(config_.hidden_size) * 4, "soft tokens");
}

Status VisionEncoder::PoisonScratch() {
  for (DeviceBuffer* b : {&pixels_, &x_pix_, &h_, &x_, &qkv_, &q_, &k_, &v_, &attn_, &a_,
                          &gate_up_, &inter_, &pooled_, &soft_out_}) {
    if (b->bytes()) GS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b->get(), 0xff, b->bytes(), stream_));
  }
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Ok();
}

Status VisionEncoder::Layer(int l) {
  const DeviceVisionLayer& L = layers_[static_cast<size_t>(l)];
  const int N = patches_, H = vc_.hidden_size, heads = vc_.num_heads, d = vc_.head_dim;
  const int qd = heads * d, I = vc_.intermediate_size;
  const float eps = static_cast<float>(vc_.rms_norm_eps);
  // x holds bf16(rms(h) ⊙ input_norm) here (from the embedding or the previous layer's end).
  GS_RETURN_IF_ERROR(gemm_.Run(Ptr<bf16>(x_), N, H, L.qkv.get<bf16>(), 3 * qd, qkv_.get(), true,
                               1.0f, stream_));
  GS_RETURN_IF_ERROR(LaunchVisionQkvNormRope(Ptr<float>(qkv_), N, heads, d, padded_dim_, L.q_norm,
                                             L.k_norm, inv_freq_, pos_x_, pos_y_, eps,
                                             Ptr<bf16>(q_), Ptr<bf16>(k_), Ptr<bf16>(v_),
                                             stream_));
  GS_RETURN_IF_ERROR(LaunchVisionAttention(tile_info_, tiles_, Ptr<bf16>(q_), Ptr<bf16>(k_),
                                           Ptr<bf16>(v_), heads, d, Ptr<bf16>(attn_), stream_));
  GS_RETURN_IF_ERROR(gemm_.Run(Ptr<bf16>(attn_), N, qd, L.o.get<bf16>(), H, a_.get(), true, 1.0f,
                               stream_));
  // h += rms(a) ⊙ post_attn; x = bf16(rms(h) ⊙ pre_ffn)
  GS_RETURN_IF_ERROR(LaunchPostAttention(Ptr<float>(h_), Ptr<float>(a_), N, H, L.post_attn,
                                         L.pre_ffn, nullptr, nullptr, eps, Ptr<bf16>(x_), nullptr,
                                         nullptr, stream_));
  GS_RETURN_IF_ERROR(gemm_.Run(Ptr<bf16>(x_), N, H, L.gate_up.get<bf16>(), 2 * I, gate_up_.get(),
                               true, 1.0f, stream_));
  GS_RETURN_IF_ERROR(LaunchGeluGlu(Ptr<float>(gate_up_), N, I, Ptr<bf16>(inter_), stream_));
  GS_RETURN_IF_ERROR(gemm_.Run(Ptr<bf16>(inter_), N, I, L.down.get<bf16>(), H, a_.get(), true,
                               1.0f, stream_));
  // h += rms(a) ⊙ post_ffn; x = the next layer's normed input (unused after the last layer).
  const bool last = l + 1 == static_cast<int>(layers_.size());
  const float* next = last ? L.post_ffn : layers_[static_cast<size_t>(l) + 1].input_norm;
  return LaunchPostAttention(Ptr<float>(h_), Ptr<float>(a_), N, H, L.post_ffn, next, nullptr,
                             nullptr, eps, Ptr<bf16>(x_), nullptr, nullptr, stream_);
}

Status VisionEncoder::Run() {
  const int N = patches_, H = vc_.hidden_size;
  const int patch_dim = vc_.patch_size * vc_.patch_size * 3;
  const float eps = static_cast<float>(vc_.rms_norm_eps);
  GS_RETURN_IF_ERROR(LaunchVisionPixels(Ptr<float>(pixels_), int64_t{N} * patch_dim,
                                        Ptr<bf16>(x_pix_), stream_));
  GS_RETURN_IF_ERROR(gemm_.Run(Ptr<bf16>(x_pix_), N, patch_dim, patch_proj_.get<bf16>(), H,
                               a_.get(), true, 1.0f, stream_));
  GS_RETURN_IF_ERROR(LaunchVisionPositions(Ptr<float>(a_), pos_x_, pos_y_, positions_.get<float>(),
                                           vc_.position_embedding_size, N, H, Ptr<float>(h_),
                                           stream_));
  GS_RETURN_IF_ERROR(LaunchRmsNorm(Ptr<float>(h_), nullptr, N, H, layers_[0].input_norm, eps,
                                   Ptr<bf16>(x_), stream_));
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) GS_RETURN_IF_ERROR(Layer(l));
  GS_RETURN_IF_ERROR(LaunchVisionPool(Ptr<float>(h_), slot_offsets_, slot_patches_, soft_, H,
                                      vc_.pooling_kernel_size, std_bias_, std_scale_, eps,
                                      Ptr<bf16>(pooled_), stream_));
  return gemm_.Run(Ptr<bf16>(pooled_), soft_, H, projector_.get<bf16>(), config_.hidden_size,
                   soft_out_.get(), true, 1.0f, stream_);
}

Expected<std::vector<std::vector<float>>> VisionEncoder::Encode(
    const std::vector<const ProcessedImage*>& images) {
  std::vector<std::vector<float>> out;
  if (images.empty()) return out;
  GS_RETURN_IF_ERROR(Prepare(images));
  GS_RETURN_IF_ERROR(Run());
  const size_t text_h = static_cast<size_t>(config_.hidden_size);
  out.resize(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const size_t rows = static_cast<size_t>(soft_first_[i + 1] - soft_first_[i]);
    out[i].resize(rows * text_h);
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        out[i].data(), soft_out_.get<float>() + static_cast<size_t>(soft_first_[i]) * text_h,
        rows * text_h * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  }
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return out;
}

}  // namespace gs::cuda
