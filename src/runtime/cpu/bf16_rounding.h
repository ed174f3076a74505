// The points where the CUDA runner rounds activations to bf16 (DESIGN §4), reproducible one by
// one in the fp32 CPU runner (CpuRunnerOptions::bf16_round_points) to measure what each costs
// against the fp32 transformers reference (docs/golden-precision.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gs::cpu {

enum Bf16Point : uint32_t {
  kBf16QkvInput = 1u << 0,      // input_norm output, the input of the q/k/v projections
  kBf16Q = 1u << 1,             // q after q_norm + RoPE
  kBf16K = 1u << 2,             // k after k_norm + RoPE (so also the KV cache)
  kBf16V = 1u << 3,             // v after v_norm (so also the KV cache)
  kBf16AttnOutput = 1u << 4,    // attention output, the input of o_proj
  kBf16DenseInput = 1u << 5,    // pre_feedforward_layernorm output, the dense MLP input
  kBf16ExpertInput = 1u << 6,   // pre_feedforward_layernorm_2 output, the experts' input
  kBf16DenseGlu = 1u << 7,      // gelu(gate)·up of the dense MLP, the input of its down_proj
  kBf16ExpertGlu = 1u << 8,     // gelu(gate)·up of each expert, the input of its down_proj
  kBf16LmHeadInput = 1u << 9,   // final-norm output, the input of the tied lm_head
};
inline constexpr int kNumBf16Points = 10;
inline constexpr uint32_t kAllBf16Points = (1u << kNumBf16Points) - 1;

// Short name of one point ("qkv_in", "q", ...), "?" for anything else.
const char* Bf16PointName(uint32_t point);
// "none", "all", or the names joined by '+'.
std::string Bf16PointsName(uint32_t points);

// kSingle: every value becomes its nearest bf16 (round to nearest even, __float2bfloat16_rn).
// kPair: hi + lo with hi = bf16(x), lo = bf16(x − hi): what a tensor-core product sees when the
// fp32 operand is split into two bf16 terms (about 16 significant bits).
enum class Bf16Mode { kNone, kSingle, kPair };

// The mode of `point` under the runner options' masks (pair wins over single).
inline Bf16Mode ModeOf(uint32_t point, uint32_t single_points, uint32_t pair_points) {
  if (pair_points & point) return Bf16Mode::kPair;
  return (single_points & point) ? Bf16Mode::kSingle : Bf16Mode::kNone;
}

// Rounds x[0..n) in place according to `mode` (kNone leaves it alone).
void RoundInPlace(float* x, size_t n, Bf16Mode mode);

}  // namespace gs::cpu
