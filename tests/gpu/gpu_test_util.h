// Helpers of the GPU tests: skip loudly without a GPU, device arrays that are poisoned (NaN) before
// each kernel runs, bf16 conversions and error measures against the CPU reference.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/kl_divergence.h"
#include "runtime/batch.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/kernels.h"
#include "util/numeric_formats.h"

namespace gs::gputest {

#define GS_REQUIRE_GPU()                                                                   \
  do {                                                                                     \
    std::string why_;                                                                      \
    if (::gs::CudaDeviceCount(&why_) == 0) {                                               \
      GTEST_SKIP() << "\n*** NO CUDA GPU (" << why_ << "): GPU TEST SKIPPED, NOTHING CHECKED ***"; \
    }                                                                                      \
  } while (0)

#define GS_ASSERT_OK(expr)                                    \
  do {                                                        \
    auto gs_st_ = (expr);                                     \
    ASSERT_TRUE(gs_st_.ok()) << gs_st_.error().message;       \
  } while (0)

#define GS_CUDA_ASSERT(call) ASSERT_EQ((call), cudaSuccess) << #call

// A typed device array; Poison() fills it with 0xFF bytes (NaN for float and bf16, -1 for int)
// so elements a kernel forgot to write fail the comparison.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n = 0) { Resize(n); }
  ~DeviceArray() { if (p_) cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void Resize(size_t n) {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = n;
    if (n) {
      EXPECT_EQ(cudaMalloc(&p_, n * sizeof(T)), cudaSuccess);
    }
  }
  void Upload(const std::vector<T>& v) {
    if (v.size() != n_) Resize(v.size());
    EXPECT_EQ(cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  void Poison() { EXPECT_EQ(cudaMemset(p_, 0xff, n_ * sizeof(T)), cudaSuccess); }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

inline std::vector<__nv_bfloat16> ToBf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    __nv_bfloat16_raw raw;
    raw.x = FloatToBf16(v[i]);
    out[i] = raw;
  }
  return out;
}

// An attention layer's geometry over test caches; the scale arrays are used only with fp8.
inline cuda::AttentionLayer KvLayer(int heads, int kv_heads, int head_dim, int window,
                                    int block_size, bool fp8, void* k_cache, void* v_cache,
                                    float* k_scale, float* v_scale) {
  cuda::AttentionLayer layer;
  layer.heads = heads;
  layer.kv_heads = kv_heads;
  layer.head_dim = head_dim;
  layer.window = window;
  layer.block_size = block_size;
  layer.kv_dtype = fp8 ? cuda::KvDtype::kFp8E4m3 : cuda::KvDtype::kBf16;
  layer.k_cache = k_cache;
  layer.v_cache = v_cache;
  layer.k_scale = fp8 ? k_scale : nullptr;
  layer.v_scale = fp8 ? v_scale : nullptr;
  return layer;
}

// Bit patterns, for bit-identity checks (NaN == NaN, -0 != +0).
inline std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

inline std::vector<uint16_t> Bits(const std::vector<__nv_bfloat16>& v) {
  std::vector<uint16_t> out;
  for (const __nv_bfloat16& x : v) out.push_back(__nv_bfloat16_raw(x).x);
  return out;
}

inline std::vector<float> FromBf16(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const __nv_bfloat16_raw raw = v[i];
    out[i] = Bf16ToFloat(raw.x);
  }
  return out;
}

// Random values rounded to bf16 (so the CPU reference sees exactly what the GPU reads).
inline std::vector<float> RandomBf16Values(size_t n, float stddev, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = RoundToBf16(dist(rng));
  return v;
}

// A random NVFP4 block-scale byte: mostly an e4m3 in [lo, hi] (bytes), and 1 in 16 each its
// negative, ±0 (the group's nonzero codes must dequantise to 0) and an e4m3 subnormal, so that
// every special case of the repack (nvfp4_repack.h) reaches the kernels.
inline uint8_t RandomScaleByte(std::mt19937_64& rng, int lo, int hi) {
  std::uniform_int_distribution<int> kind(0, 15), normal(lo, hi), sub(1, 7), bit(0, 1);
  switch (kind(rng)) {
    case 0: return static_cast<uint8_t>(0x80 | normal(rng));
    case 1: return bit(rng) ? 0x80 : 0x00;
    case 2: return static_cast<uint8_t>((bit(rng) << 7) | sub(rng));
    default: return static_cast<uint8_t>(normal(rng));
  }
}

// ||a - b|| / ||b|| over n values (NaN anywhere gives NaN, which fails every bound).
inline double RelL2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Worst row-wise relative L2 error of [rows, width] arrays.
inline double WorstRowRelL2(const std::vector<float>& got, const std::vector<float>& want,
                            size_t width) {
  double worst = 0;
  for (size_t r = 0; r * width < want.size(); ++r) {
    const double e = RelL2(got.data() + r * width, want.data() + r * width, width);
    if (!(e <= worst)) worst = e;  // NaN sticks
  }
  return worst;
}

// KL(p ‖ q) of two logit rows (tests/common/kl_divergence.h).
using testutil::KlDivergence;

// One sequence of a test Batch in KV slot `slot`: tokens [first, first + count) of the batch at
// positions start…, with the 8 global blocks slot·8 … slot·8 + 7 (each slot its own blocks).
inline BatchSequence SlotSequence(int slot, int first, int count, int start) {
  BatchSequence b;
  b.slot = slot;
  b.first_token = first;
  b.num_tokens = count;
  b.start_position = start;
  for (int i = 0; i < 8; ++i) b.block_table.push_back(slot * 8 + i);
  return b;
}

}  // namespace gs::gputest
