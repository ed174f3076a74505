#include "runtime/cuda/nvfp4_repack.h"

#include <cstring>
#include <functional>

namespace gs::cuda {
namespace {

// Source row n of the logical matrix being packed.
using RowSource = std::function<const QuantizedLinear*(int64_t n, int64_t* row)>;

// Column c of lane ℓ's fragment register j in a k16 step: rows r0 (+8 for odd j), columns
// 2(ℓ%4) (+8 for j >= 2).
inline int FragRow(int lane, int j) { return lane / 4 + ((j & 1) ? 8 : 0); }
inline int FragCol(int lane, int j) { return 2 * (lane % 4) + ((j & 2) ? 8 : 0); }

void Pack(WeightFormat format, int64_t rows, int64_t cols, const RowSource& source,
          uint8_t* codes, uint8_t* scales) {
  const int64_t tiles = rows / 16, kblocks = cols / 64;
  for (int64_t t = 0; t < tiles; ++t) {
    const uint8_t* code_row[16];
    const uint8_t* scale_row[16];
    for (int r = 0; r < 16; ++r) {
      int64_t src_row = 0;
      const QuantizedLinear* w = source(t * 16 + r, &src_row);
      if (format == WeightFormat::kNvfp4) {
        code_row[r] = w->data + src_row * (cols / 2);
        scale_row[r] = w->block_scale + src_row * (cols / 16);
      } else {
        code_row[r] = w->data + src_row * cols * 2;
        scale_row[r] = nullptr;
      }
    }
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t tk = t * kblocks + kb;
      for (int lane = 0; lane < 32; ++lane) {
        for (int s = 0; s < 4; ++s) {
          for (int j = 0; j < 4; ++j) {
            const int r = FragRow(lane, j);
            const int64_t c = kb * 64 + 16 * s + FragCol(lane, j);  // even column
            if (format == WeightFormat::kNvfp4) {
              codes[(tk * 32 + lane) * 16 + s * 4 + j] = code_row[r][c / 2];
            } else {
              std::memcpy(codes + ((tk * 4 + s) * 32 + lane) * 16 + j * 4, code_row[r] + c * 2, 4);
            }
          }
        }
      }
      if (format == WeightFormat::kNvfp4) {
        for (int q = 0; q < 8; ++q) {
          for (int j = 0; j < 8; ++j) {
            const int r = q + (j >= 4 ? 8 : 0);
            scales[(tk * 8 + q) * 8 + j] = scale_row[r][kb * 4 + (j & 3)];
          }
        }
      }
    }
  }
}

}  // namespace

Status CheckPackable(const QuantizedLinear& w, bool glu_half) {
  const int64_t row_multiple = glu_half ? 8 : 16;
  if (w.empty()) return MakeError(w.name, ": weight is missing");
  if (w.rows % row_multiple != 0 || w.cols % 64 != 0) {
    return MakeError(w.name, ": shape [", w.rows, ", ", w.cols,
                     "] is not supported by the CUDA packed GEMM (rows must be a multiple of ",
                     row_multiple, ", cols of 64)");
  }
  return Ok();
}

int64_t PackedCodeBytes(WeightFormat format, int64_t rows, int64_t cols) {
  return format == WeightFormat::kNvfp4 ? rows * cols / 2 : rows * cols * 2;
}

int64_t PackedScaleBytes(WeightFormat format, int64_t rows, int64_t cols) {
  return format == WeightFormat::kNvfp4 ? rows * cols / 16 : 0;
}

void PackLinear(const QuantizedLinear& w, uint8_t* codes, uint8_t* scales) {
  Pack(w.format, w.rows, w.cols,
       [&](int64_t n, int64_t* row) {
         *row = n;
         return &w;
       },
       codes, scales);
}

void PackGlu(const QuantizedLinear& gate, const QuantizedLinear& up, uint8_t* codes,
             uint8_t* scales) {
  Pack(gate.format, gate.rows * 2, gate.cols,
       [&](int64_t n, int64_t* row) {
         const int64_t tile = n / 16, r = n % 16;
         *row = tile * 8 + (r % 8);
         return r < 8 ? &gate : &up;
       },
       codes, scales);
}

}  // namespace gs::cuda
