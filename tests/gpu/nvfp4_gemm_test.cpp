// The packed W4A16 GEMM (nvfp4_gemm.cu) against the CPU reference Linear at the real 26B-A4B
// shapes: GLU (gate/up with their own global scales, GELU_tanh·up) and plain fp32 stores, token
// counts 1..129 (one and several 64-token chunks), NVFP4 (with negative, zero and subnormal block
// scales) and BF16 weights; and an exhaustive check that every e2m1 code times every finite e4m3
// scale is dequantized exactly by the tiled kernel (1 and 2 tiles per warp) and both decode
// kernels.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/exhaustive_nvfp4.h"
#include "gpu/gpu_test_util.h"
#include "runtime/cpu/cpu_ops.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/nvfp4_repack.h"

namespace gs {
namespace {

using cuda::bf16;
using gputest::DeviceArray;

struct OwnedLinear {
  std::vector<uint8_t> data, scales;
  QuantizedLinear q;
};

// Random NVFP4 weights: any code byte (all 16 codes), block scales mostly e4m3 bytes in
// [0x28, 0x48] (≈ 0.25 .. 4), some negative, zero or subnormal (gputest::RandomScaleByte).
OwnedLinear RandomNvfp4(int64_t rows, int64_t cols, float global, std::mt19937_64& rng,
                        const char* name) {
  OwnedLinear w;
  w.data.resize(static_cast<size_t>(rows * cols / 2));
  w.scales.resize(static_cast<size_t>(rows * cols / 16));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w.data) b = static_cast<uint8_t>(byte(rng));
  for (auto& s : w.scales) s = gputest::RandomScaleByte(rng, 0x28, 0x48);
  w.q.name = name;
  w.q.format = WeightFormat::kNvfp4;
  w.q.rows = rows;
  w.q.cols = cols;
  w.q.data = w.data.data();
  w.q.block_scale = w.scales.data();
  w.q.global_scale = global;
  return w;
}

OwnedLinear RandomBf16(int64_t rows, int64_t cols, std::mt19937_64& rng, const char* name) {
  OwnedLinear w;
  const auto v = gputest::RandomBf16Values(static_cast<size_t>(rows * cols),
                                           1.0f / std::sqrt(static_cast<float>(cols)), rng);
  w.data.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t b = FloatToBf16(v[i]);
    std::memcpy(&w.data[2 * i], &b, 2);
  }
  w.q.name = name;
  w.q.format = WeightFormat::kBf16;
  w.q.rows = rows;
  w.q.cols = cols;
  w.q.data = w.data.data();
  return w;
}

// Device copy of a packed matrix (one bank) and its kernel view.
struct DevicePackedMatrix {
  DeviceArray<uint8_t> codes, scales;
  DeviceArray<float> gs;
  cuda::PackedMatrix view;
};

void Upload(const std::vector<const QuantizedLinear*>& parts, bool glu, DevicePackedMatrix& d) {
  const QuantizedLinear& w = *parts[0];
  const int64_t rows = glu ? 2 * w.rows : w.rows;
  std::vector<uint8_t> codes(static_cast<size_t>(cuda::PackedCodeBytes(w.format, rows, w.cols)));
  std::vector<uint8_t> scales(static_cast<size_t>(cuda::PackedScaleBytes(w.format, rows, w.cols)));
  if (glu) {
    GS_ASSERT_OK(cuda::PackGlu(*parts[0], *parts[1], codes.data(), scales.data()));
  } else {
    GS_ASSERT_OK(cuda::PackLinear(w, codes.data(), scales.data()));
  }
  const bool fp4 = w.format == WeightFormat::kNvfp4;
  std::vector<float> gs;
  for (const QuantizedLinear* p : parts) gs.push_back(fp4 ? p->global_scale * cuda::kNvfp4DequantOffset : 1.0f);
  d.codes.Upload(codes);
  if (!scales.empty()) d.scales.Upload(scales);
  d.gs.Upload(gs);
  d.view = cuda::PackedMatrix{fp4 ? cuda::PackedFormat::kNvfp4 : cuda::PackedFormat::kBf16,
                              d.codes.get(), d.scales.get(), 0, 0, d.gs.get(),
                              static_cast<int>(rows), static_cast<int>(w.cols)};
}

std::vector<float> Glu(const QuantizedLinear& gate, const QuantizedLinear& up,
                       const std::vector<float>& x, int m, ThreadPool& pool) {
  std::vector<float> g(static_cast<size_t>(m * gate.rows)), u(g.size());
  cpu::Linear(gate, x.data(), m, g.data(), pool);
  cpu::Linear(up, x.data(), m, u.data(), pool);
  for (size_t i = 0; i < g.size(); ++i) g[i] = cpu::GeluTanh(g[i]) * u[i];
  return g;
}

// `w` as an [rows, cols] matrix (≥ its shape) with zero codes, scales and values beyond it: what
// the padded packing must be equivalent to.
OwnedLinear ZeroExtended(const QuantizedLinear& w, int64_t rows, int64_t cols) {
  OwnedLinear z;
  const bool fp4 = w.format == WeightFormat::kNvfp4;
  const int64_t row_bytes = fp4 ? cols / 2 : cols * 2, src_bytes = fp4 ? w.cols / 2 : w.cols * 2;
  z.data.assign(static_cast<size_t>(rows * row_bytes), 0);
  if (fp4) z.scales.assign(static_cast<size_t>(rows * cols / 16), 0);
  for (int64_t r = 0; r < w.rows; ++r) {
    std::memcpy(&z.data[static_cast<size_t>(r * row_bytes)], w.data + r * src_bytes,
                static_cast<size_t>(src_bytes));
    if (fp4) {
      std::memcpy(&z.scales[static_cast<size_t>(r * cols / 16)], w.block_scale + r * (w.cols / 16),
                  static_cast<size_t>(w.cols / 16));
    }
  }
  z.q = w;
  z.q.rows = rows;
  z.q.cols = cols;
  z.q.data = z.data.data();
  z.q.block_scale = fp4 ? z.scales.data() : nullptr;
  return z;
}

// Load-time padding of odd intermediate widths (nvfp4_repack.h PackedWidth), host only: packing
// gate/up with padded rows and down with padded columns gives byte for byte the packing of the
// zero-extended matrices, for NVFP4 and BF16; real widths are their own packed width; shapes the
// kernels cannot take are refused by name.
TEST(PackedRepack, PaddingEqualsZeroExtendedMatrix) {
  std::mt19937_64 rng(21);
  EXPECT_EQ(cuda::PackedWidth(2112), 2112);
  EXPECT_EQ(cuda::PackedWidth(704), 704);
  EXPECT_EQ(cuda::PackedWidth(96), 128);
  EXPECT_EQ(cuda::PackedWidth(160), 192);
  EXPECT_EQ(cuda::PackedWidth(32), 64);
  const int64_t hidden = 128;
  for (bool fp4 : {true, false}) {
    for (int64_t inter : {32, 96, 160}) {
      SCOPED_TRACE(::testing::Message() << (fp4 ? "nvfp4" : "bf16") << " width " << inter);
      const int64_t padded = cuda::PackedWidth(inter);
      auto gate = fp4 ? RandomNvfp4(inter, hidden, 0.5f, rng, "gate") : RandomBf16(inter, hidden, rng, "gate");
      auto up = fp4 ? RandomNvfp4(inter, hidden, 0.25f, rng, "up") : RandomBf16(inter, hidden, rng, "up");
      auto down = fp4 ? RandomNvfp4(hidden, inter, 0.5f, rng, "down") : RandomBf16(hidden, inter, rng, "down");
      const WeightFormat f = gate.q.format;
      ASSERT_TRUE(cuda::CheckPackable(gate.q, true, padded, hidden).ok());
      ASSERT_TRUE(cuda::CheckPackable(down.q, false, hidden, padded).ok());
      // gate/up: [2·padded, hidden]
      const size_t gc = static_cast<size_t>(cuda::PackedCodeBytes(f, 2 * padded, hidden));
      const size_t gs = static_cast<size_t>(cuda::PackedScaleBytes(f, 2 * padded, hidden));
      std::vector<uint8_t> c1(gc, 0xAB), s1(gs, 0xAB), c2(gc, 0xCD), s2(gs, 0xCD);
      GS_ASSERT_OK(cuda::PackGlu(gate.q, up.q, padded, c1.data(), s1.data()));
      const auto gz = ZeroExtended(gate.q, padded, hidden), uz = ZeroExtended(up.q, padded, hidden);
      GS_ASSERT_OK(cuda::PackGlu(gz.q, uz.q, c2.data(), s2.data()));
      EXPECT_EQ(c1, c2);
      EXPECT_EQ(s1, s2);
      // down: [hidden, padded]
      const size_t dc = static_cast<size_t>(cuda::PackedCodeBytes(f, hidden, padded));
      const size_t ds = static_cast<size_t>(cuda::PackedScaleBytes(f, hidden, padded));
      std::vector<uint8_t> c3(dc, 0xAB), s3(ds, 0xAB), c4(dc, 0xCD), s4(ds, 0xCD);
      GS_ASSERT_OK(cuda::PackLinear(down.q, padded, c3.data(), s3.data()));
      const auto dz = ZeroExtended(down.q, hidden, padded);
      GS_ASSERT_OK(cuda::PackLinear(dz.q, c4.data(), s4.data()));
      EXPECT_EQ(c3, c4);
      EXPECT_EQ(s3, s4);
      if (padded != inter) {
        // Without padding the odd width is refused, naming the tensor.
        const Status st = cuda::CheckPackable(down.q, false);
        ASSERT_FALSE(st.ok());
        EXPECT_NE(st.error().message.find("down"), std::string::npos) << st.error().message;
      }
    }
  }
  // A plain linear's rows are its outputs: never padded. NVFP4 columns come in scale groups.
  auto odd_rows = RandomBf16(40, 64, rng, "o_rows");
  EXPECT_FALSE(cuda::CheckPackable(odd_rows.q, false, 48, 64).ok());
  auto fp4_odd = RandomNvfp4(16, 64, 1.0f, rng, "fp4");
  fp4_odd.q.cols = 40;
  EXPECT_FALSE(cuda::CheckPackable(fp4_odd.q, false, 16, 64).ok());
}

// The split-K decode kernel's warps per tile: its own choice (0), then each forced.
constexpr int kSplits[] = {0, 1, 2, 4, 8};

// NVFP4 with 1 or 2 weight tiles per warp in the tiled kernel (SetPackedGemmMTiles), or BF16.
struct GemmCase {
  bool fp4;
  int m_tiles;
};

class PackedGemm : public ::testing::TestWithParam<GemmCase> {
 protected:
  void SetUp() override {
    default_m_tiles_ = cuda::PackedGemmMTiles();
    cuda::SetPackedGemmMTiles(GetParam().m_tiles);
  }
  void TearDown() override { cuda::SetPackedGemmMTiles(default_m_tiles_); }
  int default_m_tiles_ = 2;
};

TEST_P(PackedGemm, GluMatchesCpuAtRealShapes) {
  GS_REQUIRE_GPU();
  const bool fp4 = GetParam().fp4;
  std::mt19937_64 rng(fp4 ? 11 : 12);
  ThreadPool pool(0);
  for (auto [inter, hidden] : {std::pair{2112, 2816}, std::pair{704, 2816}}) {
    auto gate = fp4 ? RandomNvfp4(inter, hidden, 0.0021f, rng, "gate") : RandomBf16(inter, hidden, rng, "gate");
    auto up = fp4 ? RandomNvfp4(inter, hidden, 0.0037f, rng, "up") : RandomBf16(inter, hidden, rng, "up");
    DevicePackedMatrix d;
    ASSERT_NO_FATAL_FAILURE(Upload({&gate.q, &up.q}, true, d));
    for (int m : {1, 3, 17, 64, 129}) {
      const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * hidden, 1.0f, rng);
      DeviceArray<bf16> dx;
      dx.Upload(gputest::ToBf16(x));
      const auto want = Glu(gate.q, up.q, x, m, pool);
      for (int split : kSplits) {  // the decode kernel's warps per tile (0: its own choice)
        cuda::SetGemvSplit(split);
        DeviceArray<bf16> out(static_cast<size_t>(m) * inter);
        out.Poison();
        cuda::GemmRows rows;
        rows.m = m;
        GS_ASSERT_OK(cuda::LaunchPackedGemm(d.view, rows, dx.get(), hidden, out.get(), inter,
                                            cuda::GemmEpilogue::kGluBf16, nullptr));
        const auto got = gputest::FromBf16(out.Download());
        const double err = gputest::WorstRowRelL2(got, want, inter);
        EXPECT_LT(err, 1e-2) << "inter " << inter << " tokens " << m << " split " << split;
      }
      cuda::SetGemvSplit(0);
    }
  }
}

TEST_P(PackedGemm, StoreMatchesCpuAtRealShapes) {
  GS_REQUIRE_GPU();
  const bool fp4 = GetParam().fp4;
  std::mt19937_64 rng(fp4 ? 21 : 22);
  ThreadPool pool(0);
  for (auto [n, k] : {std::pair{2816, 2112}, std::pair{2816, 704}, std::pair{272, 128}}) {
    auto w = fp4 ? RandomNvfp4(n, k, 0.0013f, rng, "down") : RandomBf16(n, k, rng, "down");
    DevicePackedMatrix d;
    ASSERT_NO_FATAL_FAILURE(Upload({&w.q}, false, d));
    for (int m : {1, 3, 17, 64, 129}) {
      const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * k, 1.0f, rng);
      DeviceArray<bf16> dx;
      dx.Upload(gputest::ToBf16(x));
      std::vector<float> want(static_cast<size_t>(m) * n);
      cpu::Linear(w.q, x.data(), m, want.data(), pool);
      for (int split : kSplits) {
        cuda::SetGemvSplit(split);
        DeviceArray<float> out(static_cast<size_t>(m) * n);
        out.Poison();
        cuda::GemmRows rows;
        rows.m = m;
        GS_ASSERT_OK(cuda::LaunchPackedGemm(d.view, rows, dx.get(), k, out.get(), n,
                                            cuda::GemmEpilogue::kStoreF32, nullptr));
        const double err = gputest::WorstRowRelL2(out.Download(), want, n);
        // Same bf16 inputs, exact weights, fp32 accumulation: only summation order differs.
        EXPECT_LT(err, 1e-5) << "[" << n << ", " << k << "] tokens " << m << " split " << split;
      }
      cuda::SetGemvSplit(0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, PackedGemm,
                         ::testing::Values(GemmCase{true, 1}, GemmCase{true, 2},
                                           GemmCase{false, 1}),
                         [](const auto& info) {
                           return std::string(info.param.fp4 ? "Nvfp4" : "Bf16") +
                                  (info.param.m_tiles == 2 ? "TwoTilesPerWarp" : "");
                         });

// Every e2m1 code × every finite e4m3 block scale (negative, ±0 and subnormal included): with
// one-hot inputs the output is the dequantized weight itself, which must be exact, through the
// tiled kernel and both decode kernels.
TEST(PackedGemmExhaustive, EveryCodeTimesEveryScaleIsExact) {
  GS_REQUIRE_GPU();
  const int rows = 16, cols = 4096;  // 16 rows × 256 scale groups = every scale byte 16 times
  OwnedLinear w;
  w.q = test::ExhaustiveNvfp4(rows, cols, /*nan_stand_in=*/0x00, w.data, w.scales);
  DevicePackedMatrix d;
  ASSERT_NO_FATAL_FAILURE(Upload({&w.q}, false, d));
  // Token t is the one-hot e_t, so out[t, n] = w[n, t].
  std::vector<float> eye(static_cast<size_t>(cols) * cols, 0.0f);
  for (int t = 0; t < cols; ++t) eye[static_cast<size_t>(t) * cols + t] = 1.0f;
  DeviceArray<bf16> dx;
  dx.Upload(gputest::ToBf16(eye));
  std::vector<std::vector<float>> want(rows, std::vector<float>(cols));
  for (int n = 0; n < rows; ++n) w.q.DequantizeRowUnscaled(n, want[n].data());
  cuda::GemmRows rr;
  rr.m = cols;
  for (const std::string kernel : {"tiled", "tiled-2", "split-K", "stream"}) {
    DeviceArray<float> out(static_cast<size_t>(cols) * rows);
    out.Poison();
    const auto epi = cuda::GemmEpilogue::kStoreF32;
    if (kernel.starts_with("tiled")) {
      const int default_m_tiles = cuda::PackedGemmMTiles();
      cuda::SetPackedGemmMTiles(kernel == "tiled-2" ? 2 : 1);
      const Status st =
          cuda::LaunchPackedGemm(d.view, rr, dx.get(), cols, out.get(), rows, epi, nullptr);
      cuda::SetPackedGemmMTiles(default_m_tiles);
      GS_ASSERT_OK(st);
    } else {
      const auto kind = kernel == "split-K" ? cuda::GemvKind::kSplitK : cuda::GemvKind::kStream;
      GS_ASSERT_OK(cuda::LaunchPackedGemv(d.view, rr, dx.get(), cols, out.get(), rows, epi, kind,
                                          nullptr));
    }
    const auto got = out.Download();
    int bad = 0;
    for (int n = 0; n < rows; ++n) {
      for (int t = 0; t < cols; ++t) {
        const float g = got[static_cast<size_t>(t) * rows + n];
        if (g != want[n][t] && bad++ < 10) {
          ADD_FAILURE() << kernel << ": w[" << n << ", " << t << "]: got " << g << ", want "
                        << want[n][t] << " (scale byte 0x" << std::hex
                        << int{w.scales[static_cast<size_t>(n * cols / 16 + t / 16)]} << std::dec
                        << ")";
        }
      }
    }
    EXPECT_EQ(bad, 0) << kernel;
  }
}

}  // namespace
}  // namespace gs
