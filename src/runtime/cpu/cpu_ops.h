// fp32 building blocks of the CPU reference forward. Activations are row-major [tokens, width].
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/quantized_linear.h"
#include "util/thread_pool.h"

namespace gs::cpu {

// y[t, :] = x[t, :] · Wᵀ for t < tokens. NVFP4 rows are dequantized once per call (never kept)
// and the global scale is applied to the fp32 dot product.
void Linear(const QuantizedLinear& w, const float* x, int tokens, float* y, ThreadPool& pool);

// Calibration hook (`quantize --calib`): sees the input rows of every Linear call, and makes the
// MoE run every expert on every token for observation (the "calibrate all experts" convention).
// Process-wide and not thread-safe to change while a forward runs; never set while serving.
using LinearInputObserver = std::function<void(const QuantizedLinear& w, const float* x, int tokens)>;
void SetLinearInputObserver(LinearInputObserver observer);  // an empty function clears it
bool HasLinearInputObserver();

// Gemma 4 RMSNorm: x · (mean(x²) + eps)^-½ · w (plain w, no 1 + w). Empty weight = no scale.
// Applied to each `width`-sized row of x, in place.
void RmsNorm(float* x, int64_t rows, int width, std::span<const float> weight, float eps);

// gelu_pytorch_tanh: 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))).
float GeluTanh(float z);

// Rotate-half RoPE on one head vector: pairs (i, i + d/2) rotate by position·inv_freq[i]; pairs
// with inv_freq 0 (proportional RoPE's non-rotating part) stay as they are.
void ApplyRope(float* head, int head_dim, int position, std::span<const float> inv_freq);

// cap · tanh(x / cap), in place; cap <= 0 leaves x alone.
void Softcap(std::span<float> x, float cap);

}  // namespace gs::cpu
