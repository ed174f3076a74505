// Load-time repack of NVFP4 (and BF16) weights into the lane-major layout the packed GEMM kernels
// read (reference nvfp4 §5.2). NVFP4 codes and scales are re-encoded so that the device turns
// them into bf16 mma fragments with a few shifts and masks (packed_fragments.cuh); widths that are
// not whole tiles / k-blocks are zero-padded (PackedWidth below), otherwise no size change.
// Host code without CUDA: it is built into gemmaserve_core so that the CPU unit tests check it
// (tests/unit/nvfp4_repack_test.cpp).
//
// The matrix [N, K] is cut into 16-row tiles and 64-column k-blocks. The kernel computes with
// mma.sync.m16n8k16, weights as the A operand; in k16 step s of a block, lane ℓ owns rows
// r0 = ℓ/4 and r0 + 8 and columns c = 16s + 2(ℓ%4) + {0, 1, 8, 9}. Its fragment registers a_i
// (i = 0..3) hold row r_i = r0 + 8·(i%2), columns c_i = 16s + 2(ℓ%4) + 8·(i/2) (low bf16) and
// c_i + 1 (high bf16). Scale group of step s = block group 4·kb + s (a k16 step is one group).
//
// NVFP4 codes, per (tile, k-block) 512 B: lane ℓ's 16 B at ((tile·KB + kb)·32 + ℓ)·16, word s
// (little-endian uint32, k16 step s). Bits 4i..4i+3 hold the code of (r_i, c_i) and bits
// 16+4i..16+4i+3 the code of (r_i, c_i + 1): the four low halves in the low 16 bits, the four
// high halves in the high 16 bits. A code is the checkpoint's e2m1 nibble (bit 3 sign, bits 2..0
// = e1 e0 m), except in scale groups that the repack folds (below).
//   The kernel reads a nibble as the bf16 e2m1·2^-126 (magnitude bits at bf16 bits 8..6, sign at
//   bit 15): a_i = ((word << (6-4i)) & 0x01C001C0) | ((word << (12-4i)) & 0x80008000), a
//   negative count meaning a right shift.
//
// NVFP4 block scales, per (tile, k-block) 64 B: the 8 B at ((tile·KB + kb)·8 + ℓ/4)·8 are
// [r0: groups 0..3] [r0+8: groups 0..3]. Each byte is q = Nvfp4ScaleCode(|scale|), chosen so that
// the bf16 bit pattern of |s|·2^110 (s the e4m3 value) is (q << 4) + (227 << 7): for a normal e4m3
// (exponent field E >= 1, mantissa m) q = ((E + 3) << 3) | m = byte + 24; e4m3 subnormals
// (m·2^-9) are normalised exactly (m = 1: 8, 2: 16, 3: 20, 4..7: 24, 26, 28, 30). q <= 150, so
// the device forms both bf16 halves at once, (q | q << 16)·16 + 0x71807180, with no carry.
//   Folded groups (the 16 codes of one row in one scale group): a scale of ±0 is stored as q = 0
//   with all 16 codes 0 (the group dequantises to 0, as in the checkpoint); a negative scale is
//   stored as |s| with the sign bit of each of the 16 codes flipped (exact). A NaN scale (0x7f,
//   0xff) is rejected.
//
// The kernel multiplies code and scale in bf16, e2m1·s·2^-16 (normal and exact), so the device
// global scale is g·2^16 (kNvfp4DequantOffset).
//
// BF16 weights, per (tile, k-block, step) 512 B: lane ℓ's 16 B at
// (((tile·KB + kb)·4 + s)·32 + ℓ)·16 are a0..a3 as bf16 pairs: [r0: c,c+1] [r0+8: c,c+1]
// [r0: c+8,c+9] [r0+8: c+8,c+9].
//
// GLU matrices (gate/up) are interleaved so that tile t holds gate rows 8t..8t+7 then up rows
// 8t..8t+7: lane ℓ's accumulator rows r0 and r0+8 are then gate j and up j of the same j, and
// GELU_tanh(gate)·up is computed in registers with each half's own global scale.
#pragma once

#include <cstdint>

#include "model/quantized_linear.h"
#include "util/status.h"

namespace gs::cuda {

inline constexpr float kNvfp4DequantOffset = 65536.0f;  // 2^16

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

// The packed scale byte q of a finite, nonzero e4m3 block scale (the sign bit is ignored; see the
// layout above). Nvfp4ScaleCode(0) is 0.
uint8_t Nvfp4ScaleCode(uint8_t e4m3);

// Writes the packed form of `w` (natural row order) to codes/scales (sized by the functions above
// for [w.rows, padded_cols]); columns from w.cols on are zero. Fails, naming the tensor, row and
// scale group, on a NaN block scale.
Status PackLinear(const QuantizedLinear& w, int64_t padded_cols, uint8_t* codes,
                  uint8_t* scales);
inline Status PackLinear(const QuantizedLinear& w, uint8_t* codes, uint8_t* scales) {
  return PackLinear(w, w.cols, codes, scales);
}

// The same for the interleaved [gate; up] GLU matrix of 2·padded_rows rows: gate and up rows from
// gate.rows on are zero.
Status PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, int64_t padded_rows,
               uint8_t* codes, uint8_t* scales);
inline Status PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, uint8_t* codes,
                      uint8_t* scales) {
  return PackGlu(gate, up, gate.rows, codes, scales);
}

}  // namespace gs::cuda
