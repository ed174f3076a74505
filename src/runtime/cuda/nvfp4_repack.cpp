#include "runtime/cuda/nvfp4_repack.h"

#include <cstring>
#include <functional>

#include "util/numeric_formats.h"

namespace gs::cuda {
namespace {

// Source row n of the logical matrix being packed, or null for a zero (padding) row.
using RowSource = std::function<const QuantizedLinear*(int64_t n, int64_t* row)>;

// Row and (even) column of lane ℓ's fragment register j in a k16 step: rows r0 (+8 for odd j),
// columns 2(ℓ%4) (+8 for j >= 2).
inline int FragRow(int lane, int j) { return lane / 4 + ((j & 1) ? 8 : 0); }
inline int FragCol(int lane, int j) { return 2 * (lane % 4) + ((j & 2) ? 8 : 0); }

// One row's source: its tensor (for messages; null for a padding row), codes and scales. Columns
// at or past `cols` (every column of a padding row) read as zero codes, values and scales.
struct SourceRow {
  const QuantizedLinear* w = nullptr;
  int64_t row = 0;
  int64_t cols = 0;
  const uint8_t* codes = nullptr;
  const uint8_t* scales = nullptr;

  uint8_t Nvfp4Pair(int64_t c) const { return c < cols ? codes[c / 2] : 0; }  // c even
  uint8_t Scale(int64_t group) const { return group * 16 < cols ? scales[group] : 0; }
  void Bf16Pair(int64_t c, uint8_t* out) const {  // c even: bf16 values c and c + 1
    for (int64_t i = 0; i < 2; ++i) {
      const bool real = c + i < cols;
      out[2 * i] = real ? codes[(c + i) * 2] : 0;
      out[2 * i + 1] = real ? codes[(c + i) * 2 + 1] : 0;
    }
  }
};

// How one scale group is stored: its packed scale byte, and what to do to its code bytes (XOR
// both sign bits for a negative scale, AND with 0 for a zero scale).
struct GroupFold {
  uint8_t q = 0;
  uint8_t code_xor = 0;
  uint8_t code_and = 0xff;
};

Status CheckScalesFinite(const SourceRow& src) {
  for (int64_t g = 0; g < src.cols / 16; ++g) {
    const uint8_t b = src.scales[g];
    if (E4m3IsNan(b)) {
      return MakeError(src.w->name, ": NaN block scale (e4m3 byte ", static_cast<int>(b),
                       ") at row ", src.row, ", scale group ", g, " (columns ", g * 16, "..",
                       g * 16 + 15, ")");
    }
  }
  return Ok();
}

GroupFold FoldGroup(uint8_t scale) {
  GroupFold f;
  if ((scale & 0x7f) == 0) {
    f.code_and = 0;  // ±0 · anything = 0 (and padding): zero codes give exactly that with any q
    return f;
  }
  f.q = Nvfp4ScaleCode(scale);
  if (scale & 0x80) f.code_xor = 0x88;  // s·e = |s|·(−e): flip each code's sign bit
  return f;
}

// The 16 B of one lane for one (tile, k-block): word s = k16 step s (nvfp4_repack.h).
void PackNvfp4Lane(const SourceRow (&rows)[16], const GroupFold (&folds)[16][4], int64_t kb,
                   int lane, uint8_t* out) {
  for (int s = 0; s < 4; ++s) {
    uint32_t word = 0;
    for (int i = 0; i < 4; ++i) {
      const int r = FragRow(lane, i);
      const int64_t c = kb * 64 + 16 * s + FragCol(lane, i);  // even column
      const GroupFold& f = folds[r][s];
      const uint32_t byte = (rows[r].Nvfp4Pair(c) ^ f.code_xor) & f.code_and;
      word |= (byte & 0xfu) << (4 * i) | (byte >> 4) << (16 + 4 * i);
    }
    for (int j = 0; j < 4; ++j) out[4 * s + j] = static_cast<uint8_t>(word >> (8 * j));
  }
}

Status Pack(WeightFormat format, int64_t rows, int64_t cols, const RowSource& source,
            uint8_t* codes, uint8_t* scales) {
  const int64_t tiles = rows / 16, kblocks = cols / 64;
  const bool fp4 = format == WeightFormat::kNvfp4;
  for (int64_t t = 0; t < tiles; ++t) {
    SourceRow src[16];
    for (int r = 0; r < 16; ++r) {
      src[r].w = source(t * 16 + r, &src[r].row);
      const QuantizedLinear* w = src[r].w;
      if (w == nullptr) continue;  // padding row: cols 0, all zero
      src[r].cols = w->cols;
      if (fp4) {
        src[r].codes = w->data + src[r].row * (w->cols / 2);
        src[r].scales = w->block_scale + src[r].row * (w->cols / 16);
        GS_RETURN_IF_ERROR(CheckScalesFinite(src[r]));
      } else {
        src[r].codes = w->data + src[r].row * w->cols * 2;
      }
    }
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t tk = t * kblocks + kb;
      if (!fp4) {
        for (int lane = 0; lane < 32; ++lane) {
          for (int s = 0; s < 4; ++s) {
            for (int j = 0; j < 4; ++j) {
              const int64_t c = kb * 64 + 16 * s + FragCol(lane, j);
              src[FragRow(lane, j)].Bf16Pair(c, codes + ((tk * 4 + s) * 32 + lane) * 16 + j * 4);
            }
          }
        }
        continue;
      }
      GroupFold folds[16][4];
      for (int r = 0; r < 16; ++r) {
        for (int g = 0; g < 4; ++g) folds[r][g] = FoldGroup(src[r].Scale(kb * 4 + g));
      }
      for (int lane = 0; lane < 32; ++lane) {
        PackNvfp4Lane(src, folds, kb, lane, codes + (tk * 32 + lane) * 16);
      }
      for (int q = 0; q < 8; ++q) {
        for (int j = 0; j < 8; ++j) {
          scales[(tk * 8 + q) * 8 + j] = folds[q + (j >= 4 ? 8 : 0)][j & 3].q;
        }
      }
    }
  }
  return Ok();
}

}  // namespace

Status CheckPackable(const QuantizedLinear& w, bool glu_half, int64_t padded_rows,
                     int64_t padded_cols) {
  const int64_t row_multiple = glu_half ? 8 : 16;
  if (w.empty()) return MakeError(w.name, ": weight is missing");
  const bool fp4 = w.format == WeightFormat::kNvfp4;
  if (padded_rows % row_multiple != 0 || padded_cols % 64 != 0 || w.rows > padded_rows ||
      w.cols > padded_cols || (!glu_half && w.rows != padded_rows) ||
      (fp4 && w.cols % 16 != 0)) {
    return MakeError(w.name, ": shape [", w.rows, ", ", w.cols, "] packed as [", padded_rows,
                     ", ", padded_cols, "] is not supported by the CUDA packed GEMM (rows must be "
                     "a multiple of ", row_multiple, glu_half ? "" : " and are not padded",
                     ", packed cols a multiple of 64", fp4 ? ", NVFP4 cols of 16" : "", ")");
  }
  return Ok();
}

int64_t PackedCodeBytes(WeightFormat format, int64_t rows, int64_t cols) {
  return format == WeightFormat::kNvfp4 ? rows * cols / 2 : rows * cols * 2;
}

int64_t PackedScaleBytes(WeightFormat format, int64_t rows, int64_t cols) {
  return format == WeightFormat::kNvfp4 ? rows * cols / 16 : 0;
}

uint8_t Nvfp4ScaleCode(uint8_t e4m3) {
  const int exp = (e4m3 >> 3) & 0xf, mant = e4m3 & 0x7;
  if (exp != 0) return static_cast<uint8_t>(((exp + 3) << 3) | mant);
  // Subnormal m·2^-9, normalised: m = 1 is 2^-9, 2..3 are 2^-8·(1 + (m-2)/2), 4..7 are
  // 2^-7·(1 + (m-4)/4) (the mantissa field counts eighths).
  static constexpr uint8_t kSubnormal[8] = {0,           1 << 3,           2 << 3, (2 << 3) | 4,
                                            3 << 3,      (3 << 3) | 2, (3 << 3) | 4, (3 << 3) | 6};
  return kSubnormal[mant];
}

Status PackLinear(const QuantizedLinear& w, int64_t padded_cols, uint8_t* codes,
                  uint8_t* scales) {
  return Pack(w.format, w.rows, padded_cols,
              [&](int64_t n, int64_t* row) {
                *row = n;
                return &w;
              },
              codes, scales);
}

Status PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, int64_t padded_rows,
               uint8_t* codes, uint8_t* scales) {
  return Pack(gate.format, padded_rows * 2, gate.cols,
              [&](int64_t n, int64_t* row) -> const QuantizedLinear* {
                const int64_t tile = n / 16, r = n % 16;
                *row = tile * 8 + (r % 8);
                if (*row >= gate.rows) return nullptr;  // padding
                return r < 8 ? &gate : &up;
              },
              codes, scales);
}

}  // namespace gs::cuda
