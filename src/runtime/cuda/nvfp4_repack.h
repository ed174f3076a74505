// Load-time repack of NVFP4 (and BF16) weights into the lane-major layout the packed GEMM kernel
// reads (reference nvfp4 §5.2). A pure byte permutation: no value changes, no size change.
//
// The matrix [N, K] is cut into 16-row tiles and 64-column k-blocks. The kernel computes with
// mma.sync.m16n8k16, weights as the A operand; in k16 step s of a block, lane ℓ owns rows
// r0 = ℓ/4 and r0 + 8 and columns c = 16s + 2(ℓ%4) + {0, 1, 8, 9}.
//
// NVFP4 codes, per (tile, k-block) 512 B: lane ℓ's 16 B at ((tile·KB + kb)·32 + ℓ)·16; its word s
// (k16 step s) holds the checkpoint bytes [r0: c,c+1] [r0+8: c,c+1] [r0: c+8,c+9] [r0+8: c+8,c+9]
// (low nibble = even column, as in the checkpoint). Byte j of the word is fragment register a_j.
// Block scales, per (tile, k-block) 64 B: the 8 B at ((tile·KB + kb)·8 + ℓ/4)·8 are
// [r0: groups 0..3] [r0+8: groups 0..3] (a k16 step is exactly one scale group).
//
// BF16 weights, per (tile, k-block, step) 512 B: lane ℓ's 16 B at
// (((tile·KB + kb)·4 + s)·32 + ℓ)·16 are a0..a3 as bf16 pairs: [r0: c,c+1] [r0+8: c,c+1]
// [r0: c+8,c+9] [r0+8: c+8,c+9].
//
// GLU matrices (gate/up) are interleaved so that tile t holds gate rows 8t..8t+7 then up rows
// 8t..8t+7: lane ℓ's accumulator rows r0 and r0+8 are then gate j and up j of the same j, and
// GELU_tanh(gate)·up is computed in registers with each half's own global scale.
//
// The kernel reads a code as e2m1·2^-126 and a scale as e4m3·2^110 (so their bf16 product is
// normal and exact), so the device global scale is g·2^16 (kNvfp4DequantOffset).
#pragma once

#include <cstdint>
#include <vector>

#include "model/quantized_linear.h"
#include "util/status.h"

namespace gs::cuda {

inline constexpr float kNvfp4DequantOffset = 65536.0f;  // 2^16

struct PackedHost {
  std::vector<uint8_t> codes;   // nvfp4 codes or bf16 values, lane-major
  std::vector<uint8_t> scales;  // nvfp4 only
};

// Checks that `w` can be packed: rows % 16 == 0 (or % 8 for GLU halves), cols % 64 == 0, and the
// format matches `format`. Errors name the tensor.
Status CheckPackable(const QuantizedLinear& w, bool glu_half);

// Bytes of the packed form of an [rows, cols] matrix.
int64_t PackedCodeBytes(WeightFormat format, int64_t rows, int64_t cols);
int64_t PackedScaleBytes(WeightFormat format, int64_t rows, int64_t cols);

// Writes the packed form of `w` (natural row order) to codes/scales (sized by the functions above).
void PackLinear(const QuantizedLinear& w, uint8_t* codes, uint8_t* scales);

// The same for the interleaved [gate; up] GLU matrix of 2·gate.rows rows.
void PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, uint8_t* codes,
             uint8_t* scales);

}  // namespace gs::cuda
