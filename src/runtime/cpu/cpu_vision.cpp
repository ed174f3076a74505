#include "runtime/cpu/cpu_vision.h"

#include <algorithm>
#include <cmath>

#include "runtime/cpu/cpu_ops.h"

namespace gs::cpu {

Status CheckVisionInput(const VisionConfig& vc, const ProcessedImage& img) {
  const int n = img.num_patches(), k = vc.pooling_kernel_size;
  if (img.patch_size != vc.patch_size || img.pooling_kernel_size != k) {
    return MakeError("image was preprocessed with patch ", img.patch_size, " / pooling ",
                     img.pooling_kernel_size, " but vision_config has ", vc.patch_size, " / ", k);
  }
  if (n <= 0 || img.patches_h % k != 0 || img.patches_w % k != 0 ||
      img.pixel_values.size() != static_cast<size_t>(n) * img.patch_dim() ||
      img.position_x.size() != static_cast<size_t>(n) || img.position_y.size() != img.position_x.size()) {
    return MakeError("image: inconsistent patch grid ", img.patches_h, "x", img.patches_w);
  }
  // transformers' Gemma4ImageProcessor bounds a side only by the soft-token budget (an extreme
  // aspect ratio keeps up to budget × 3 patches on its long side), and its patch embedder one-hot
  // encodes each coordinate over position_embedding_size classes, which raises for a larger one:
  // such an image cannot be encoded by this checkpoint, so it is refused, never clamped.
  if (img.patches_w > vc.position_embedding_size || img.patches_h > vc.position_embedding_size) {
    return MakeError("image of ", img.patches_w, " × ", img.patches_h,
                     " patches (width × height) has more patches on a side than the vision "
                     "position table holds (vision_config.position_embedding_size = ",
                     vc.position_embedding_size, "); use a smaller max_soft_tokens or a less "
                     "elongated image");
  }
  return Ok();
}

namespace {

// e = 2·(pixels − 0.5) · W_inᵀ + T_x[x] + T_y[y]
std::vector<float> EmbedPatches(const VisionConfig& vc, const VisionWeights& w,
                                const ProcessedImage& img, ThreadPool& pool) {
  const int n = img.num_patches(), h = vc.hidden_size;
  std::vector<float> x(img.pixel_values.size()), e(static_cast<size_t>(n) * h);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 2.0f * (img.pixel_values[i] - 0.5f);
  Linear(w.patch_proj, x.data(), n, e.data(), pool);
  for (int t = 0; t < n; ++t) {
    const float* tx = w.PositionRow(0, img.position_x[static_cast<size_t>(t)], h, vc.position_embedding_size);
    const float* ty = w.PositionRow(1, img.position_y[static_cast<size_t>(t)], h, vc.position_embedding_size);
    float* row = &e[static_cast<size_t>(t) * h];
    for (int j = 0; j < h; ++j) row[j] += tx[j] + ty[j];
  }
  return e;
}

// Every patch attends to every patch (scale 1.0), per head.
void Attend(const float* q, const float* k, const float* v, int n, int heads, int d, float* out,
            ThreadPool& pool) {
  const int row = heads * d;
  pool.ParallelFor(int64_t{n} * heads, [&](int64_t begin, int64_t end) {
    std::vector<float> s(static_cast<size_t>(n));
    for (int64_t task = begin; task < end; ++task) {
      const int i = static_cast<int>(task / heads), hh = static_cast<int>(task % heads);
      const float* qi = q + static_cast<size_t>(i) * row + hh * d;
      float mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const float* kj = k + static_cast<size_t>(j) * row + hh * d;
        float acc = 0.0f;
        for (int x = 0; x < d; ++x) acc += qi[x] * kj[x];
        s[static_cast<size_t>(j)] = acc;
        mx = std::max(mx, acc);
      }
      double sum = 0.0;
      for (float& z : s) sum += z = std::exp(z - mx);
      float* o = out + static_cast<size_t>(i) * row + hh * d;
      std::fill(o, o + d, 0.0f);
      for (int j = 0; j < n; ++j) {
        const float p = static_cast<float>(s[static_cast<size_t>(j)] / sum);
        const float* vj = v + static_cast<size_t>(j) * row + hh * d;
        for (int x = 0; x < d; ++x) o[x] += p * vj[x];
      }
    }
  });
}

// x += post_attn_norm(attn(input_norm(x))); x += post_ffn_norm(mlp(pre_ffn_norm(x)))
void EncoderLayer(const VisionConfig& vc, const VisionLayerWeights& w, const ProcessedImage& img,
                  const std::vector<float>& inv_freq, std::vector<float>& x, ThreadPool& pool) {
  const int n = img.num_patches(), h = vc.hidden_size, heads = vc.num_heads, d = vc.head_dim;
  const float eps = static_cast<float>(vc.rms_norm_eps);
  const size_t nh = static_cast<size_t>(n) * h, nq = static_cast<size_t>(n) * heads * d;
  std::vector<float> xn(x), q(nq), k(nq), v(nq), o(nq), a(nh);
  RmsNorm(xn.data(), n, h, w.input_norm, eps);
  Linear(w.q, xn.data(), n, q.data(), pool);
  Linear(w.k, xn.data(), n, k.data(), pool);
  Linear(w.v, xn.data(), n, v.data(), pool);
  RmsNorm(q.data(), int64_t{n} * heads, d, w.q_norm, eps);
  RmsNorm(k.data(), int64_t{n} * heads, d, w.k_norm, eps);
  RmsNorm(v.data(), int64_t{n} * heads, d, {}, eps);
  // 2-D RoPE: the first half of each head turns with the patch column, the second with the row.
  for (int t = 0; t < n; ++t) {
    const int px = img.position_x[static_cast<size_t>(t)], py = img.position_y[static_cast<size_t>(t)];
    for (int hh = 0; hh < heads; ++hh) {
      for (float* head : {&q[(static_cast<size_t>(t) * heads + hh) * d],
                          &k[(static_cast<size_t>(t) * heads + hh) * d]}) {
        ApplyRope(head, d / 2, px, inv_freq);
        ApplyRope(head + d / 2, d / 2, py, inv_freq);
      }
    }
  }
  Attend(q.data(), k.data(), v.data(), n, heads, d, o.data(), pool);
  Linear(w.o, o.data(), n, a.data(), pool);
  RmsNorm(a.data(), n, h, w.post_attn_norm, eps);
  for (size_t i = 0; i < nh; ++i) x[i] += a[i];

  const int inter = vc.intermediate_size;
  std::vector<float> g(static_cast<size_t>(n) * inter), u(g.size());
  xn = x;
  RmsNorm(xn.data(), n, h, w.pre_ffn_norm, eps);
  Linear(w.gate, xn.data(), n, g.data(), pool);
  Linear(w.up, xn.data(), n, u.data(), pool);
  for (size_t i = 0; i < g.size(); ++i) g[i] = GeluTanh(g[i]) * u[i];
  Linear(w.down, g.data(), n, a.data(), pool);
  RmsNorm(a.data(), n, h, w.post_ffn_norm, eps);
  for (size_t i = 0; i < nh; ++i) x[i] += a[i];
}

// Mean over each k×k block of patches, slot = x/k + (W/k)·(y/k) (row-major over the pooled grid).
std::vector<float> PoolByPositions(const VisionConfig& vc, const ProcessedImage& img,
                                   const std::vector<float>& x) {
  const int k = vc.pooling_kernel_size, h = vc.hidden_size, pooled_w = img.patches_w / k;
  const float inv = 1.0f / static_cast<float>(k * k);
  std::vector<float> out(static_cast<size_t>(img.num_soft_tokens) * h, 0.0f);
  for (int t = 0; t < img.num_patches(); ++t) {
    const int slot = img.position_x[static_cast<size_t>(t)] / k +
                     pooled_w * (img.position_y[static_cast<size_t>(t)] / k);
    float* dst = &out[static_cast<size_t>(slot) * h];
    const float* src = &x[static_cast<size_t>(t) * h];
    for (int j = 0; j < h; ++j) dst[j] += src[j] * inv;
  }
  return out;
}

}  // namespace

Expected<std::vector<float>> EncodeImage(const ModelConfig& config, const VisionWeights& w,
                                         const ProcessedImage& img, ThreadPool& pool) {
  if (!config.vision) return MakeError("the model has no vision_config: it takes no images");
  const VisionConfig& vc = *config.vision;
  GS_RETURN_IF_ERROR(CheckVisionInput(vc, img));
  if (w.layers.size() != static_cast<size_t>(vc.num_layers)) {
    return MakeError("vision weights have ", w.layers.size(), " layers, config ", vc.num_layers);
  }
  RopeConfig rope;
  rope.theta = vc.rope_theta;
  // Each spatial axis gets head_dim/2 channels with its own full frequency range.
  const std::vector<float> inv_freq = rope.InverseFrequencies(vc.head_dim / 2);
  std::vector<float> x = EmbedPatches(vc, w, img, pool);
  for (const VisionLayerWeights& lw : w.layers) EncoderLayer(vc, lw, img, inv_freq, x, pool);

  // Pooling, √hidden and standardisation in fp32 (std_bias is ~1e4 in the real model).
  std::vector<float> pooled = PoolByPositions(vc, img, x);
  const float root = static_cast<float>(std::sqrt(static_cast<double>(vc.hidden_size)));
  const int h = vc.hidden_size;
  for (size_t i = 0; i < pooled.size(); ++i) {
    float v = pooled[i] * root;
    if (vc.standardize) v = (v - w.std_bias[i % h]) * w.std_scale[i % h];
    pooled[i] = v;
  }
  const int n = img.num_soft_tokens;
  RmsNorm(pooled.data(), n, h, {}, static_cast<float>(vc.rms_norm_eps));
  std::vector<float> soft(static_cast<size_t>(n) * config.hidden_size);
  Linear(w.projector, pooled.data(), n, soft.data(), pool);
  return soft;
}

}  // namespace gs::cpu
