#include "runtime/cuda/nvfp4_repack.h"

#include <cstring>
#include <functional>

namespace gs::cuda {
namespace {

// Source row n of the logical matrix being packed, or null for a zero (padding) row.
using RowSource = std::function<const QuantizedLinear*(int64_t n, int64_t* row)>;

// Column c of lane ℓ's fragment register j in a k16 step: rows r0 (+8 for odd j), columns
// 2(ℓ%4) (+8 for j >= 2).
inline int FragRow(int lane, int j) { return lane / 4 + ((j & 1) ? 8 : 0); }
inline int FragCol(int lane, int j) { return 2 * (lane % 4) + ((j & 2) ? 8 : 0); }

// One source row as the packer reads it; columns at or past `cols` (and every column of a
// padding row) read as zero codes, zero bf16 values and zero scales.
struct SourceRow {
  const uint8_t* codes = nullptr;
  const uint8_t* scales = nullptr;
  int64_t cols = 0;

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

void Pack(WeightFormat format, int64_t rows, int64_t cols, const RowSource& source,
          uint8_t* codes, uint8_t* scales) {
  const int64_t tiles = rows / 16, kblocks = cols / 64;
  const bool fp4 = format == WeightFormat::kNvfp4;
  for (int64_t t = 0; t < tiles; ++t) {
    SourceRow row[16];
    for (int r = 0; r < 16; ++r) {
      int64_t src_row = 0;
      const QuantizedLinear* w = source(t * 16 + r, &src_row);
      if (w == nullptr) continue;
      row[r].cols = w->cols;
      row[r].codes = w->data + src_row * (fp4 ? w->cols / 2 : w->cols * 2);
      row[r].scales = fp4 ? w->block_scale + src_row * (w->cols / 16) : nullptr;
    }
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t tk = t * kblocks + kb;
      for (int lane = 0; lane < 32; ++lane) {
        for (int s = 0; s < 4; ++s) {
          for (int j = 0; j < 4; ++j) {
            const SourceRow& src = row[FragRow(lane, j)];
            const int64_t c = kb * 64 + 16 * s + FragCol(lane, j);  // even column
            if (fp4) {
              codes[(tk * 32 + lane) * 16 + s * 4 + j] = src.Nvfp4Pair(c);
            } else {
              src.Bf16Pair(c, codes + ((tk * 4 + s) * 32 + lane) * 16 + j * 4);
            }
          }
        }
      }
      if (fp4) {
        for (int q = 0; q < 8; ++q) {
          for (int j = 0; j < 8; ++j) {
            const SourceRow& src = row[q + (j >= 4 ? 8 : 0)];
            scales[(tk * 8 + q) * 8 + j] = src.Scale(kb * 4 + (j & 3));
          }
        }
      }
    }
  }
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

void PackLinear(const QuantizedLinear& w, int64_t padded_cols, uint8_t* codes, uint8_t* scales) {
  Pack(w.format, w.rows, padded_cols,
       [&](int64_t n, int64_t* row) {
         *row = n;
         return &w;
       },
       codes, scales);
}

void PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, int64_t padded_rows,
             uint8_t* codes, uint8_t* scales) {
  Pack(gate.format, padded_rows * 2, gate.cols,
       [&](int64_t n, int64_t* row) -> const QuantizedLinear* {
         const int64_t tile = n / 16, r = n % 16;
         *row = tile * 8 + (r % 8);
         if (*row >= gate.rows) return nullptr;  // padding
         return r < 8 ? &gate : &up;
       },
       codes, scales);
}

}  // namespace gs::cuda
