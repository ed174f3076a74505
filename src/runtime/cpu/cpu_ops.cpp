#include "runtime/cpu/cpu_ops.h"

#include <cmath>

namespace gs::cpu {
namespace {

LinearInputObserver& Observer() {
  static LinearInputObserver observer;
  return observer;
}

}  // namespace

void SetLinearInputObserver(LinearInputObserver observer) { Observer() = std::move(observer); }
bool HasLinearInputObserver() { return static_cast<bool>(Observer()); }

void Linear(const QuantizedLinear& w, const float* x, int tokens, float* y, ThreadPool& pool) {
  if (Observer()) Observer()(w, x, tokens);
  const int64_t n_out = w.rows, k = w.cols;
  const float out_scale = w.OutputScale();
  pool.ParallelFor(n_out, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t n = begin; n < end; ++n) {
      w.DequantizeRowUnscaled(n, row.data());
      for (int t = 0; t < tokens; ++t) {
        const float* xt = x + static_cast<int64_t>(t) * k;
        float acc = 0.0f;
        for (int64_t i = 0; i < k; ++i) acc += xt[i] * row[static_cast<size_t>(i)];
        y[static_cast<int64_t>(t) * n_out + n] = acc * out_scale;
      }
    }
  });
}

void RmsNorm(float* x, int64_t rows, int width, std::span<const float> weight, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * width;
    double ss = 0.0;
    for (int i = 0; i < width; ++i) ss += static_cast<double>(v[i]) * v[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / width) + eps);
    for (int i = 0; i < width; ++i) {
      v[i] *= inv;
      if (!weight.empty()) v[i] *= weight[static_cast<size_t>(i)];
    }
  }
}

float GeluTanh(float z) {
  const float k = 0.7978845608028654f;  // √(2/π)
  return 0.5f * z * (1.0f + std::tanh(k * (z + 0.044715f * z * z * z)));
}

void ApplyRope(float* head, int head_dim, int position, std::span<const float> inv_freq) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float f = inv_freq[static_cast<size_t>(i)];
    if (f == 0.0f) continue;
    // The angle is formed in fp32 as PyTorch does; cos/sin of that fp32 value.
    const float angle = static_cast<float>(position) * f;
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    const float x1 = head[i], x2 = head[i + half];
    head[i] = x1 * c - x2 * s;
    head[i + half] = x2 * c + x1 * s;
  }
}

void Softcap(std::span<float> x, float cap) {
  if (cap <= 0.0f) return;
  for (float& v : x) v = cap * std::tanh(v / cap);
}

}  // namespace gs::cpu
