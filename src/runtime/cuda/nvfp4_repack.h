// Load-time repack of NVFP4 (and BF16) weights into the lane-major layout the packed GEMM kernel
// reads (reference nvfp4 §5.2). A pure byte permutation (no value changes, no size change), plus
// zero padding of widths that are not whole tiles / k-blocks (PackedWidth below).
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

// Any intermediate width runs on the packed kernels by zero padding at load time: an MLP of
// width I is packed as one of width PackedWidth(I) (I rounded up to the 64-column k-block), gate
// and up with zero rows (codes and scales) beyond I, down with zero columns beyond I. The GLU
// epilogue then writes GELU_tanh(0) · 0 = 0 into the padding columns of the intermediate
// activation, which down multiplies by zero weights: the result is the unpadded product, exactly.
// The real widths (2112 dense, 704 experts) are multiples of 64 and are packed as they are.
inline int64_t PackedWidth(int64_t width) { return (width + 63) / 64 * 64; }

// Checks that `w` can be packed as a [padded_rows, padded_cols] matrix (GLU halves: each half
// padded to padded_rows) with zeros beyond its own shape: padded_rows a multiple of 16 (8 for a
// GLU half) and no row padding of a plain linear (its outputs are stored as they are),
// padded_cols a multiple of 64, and padded NVFP4 columns in whole 16-column scale groups. Errors
// name the tensor.
Status CheckPackable(const QuantizedLinear& w, bool glu_half, int64_t padded_rows,
                     int64_t padded_cols);
// No padding: rows % 16 == 0 (or % 8 for GLU halves), cols % 64 == 0.
inline Status CheckPackable(const QuantizedLinear& w, bool glu_half) {
  return CheckPackable(w, glu_half, w.rows, w.cols);
}

// Bytes of the packed form of an [rows, cols] matrix.
int64_t PackedCodeBytes(WeightFormat format, int64_t rows, int64_t cols);
int64_t PackedScaleBytes(WeightFormat format, int64_t rows, int64_t cols);

// Writes the packed form of `w` (natural row order) to codes/scales (sized by the functions above
// for [w.rows, padded_cols]); columns from w.cols on are zero.
void PackLinear(const QuantizedLinear& w, int64_t padded_cols, uint8_t* codes, uint8_t* scales);
inline void PackLinear(const QuantizedLinear& w, uint8_t* codes, uint8_t* scales) {
  PackLinear(w, w.cols, codes, scales);
}

// The same for the interleaved [gate; up] GLU matrix of 2·padded_rows rows: gate and up rows from
// gate.rows on are zero.
void PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, int64_t padded_rows,
             uint8_t* codes, uint8_t* scales);
inline void PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, uint8_t* codes,
                    uint8_t* scales) {
  PackGlu(gate, up, gate.rows, codes, scales);
}

}  // namespace gs::cuda
