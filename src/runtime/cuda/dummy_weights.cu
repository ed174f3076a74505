// Pseudo-random weights generated on the GPU for `--load-format dummy` (real 26B-A4B shapes
// without a checkpoint). A counter-based hash (splitmix64) makes every element independent of the
// launch shape, so the same seed gives the same model.
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

__device__ __forceinline__ uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) from 24 hash bits.
__device__ __forceinline__ float Uniform(uint64_t seed, int64_t i) {
  return static_cast<float>(Mix(seed ^ Mix(static_cast<uint64_t>(i))) >> 40) * 0x1p-24f;
}

// Uniform values with the requested standard deviation: (u - ½)·√12·σ.
__global__ void FillBf16Kernel(bf16* out, int64_t n, float stddev, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn((Uniform(seed, i) - 0.5f) * 3.4641016f * stddev);
  }
}

// Codes: any byte (every code word is valid). Scales: a log-uniform value in [lo, hi), rounded
// down to a positive normal e4m3 (exponent field E in 1..15, mantissa m) and stored packed as
// nvfp4_repack.h's q = ((E + 3) << 3) | m = e4m3 byte + 24.
__global__ void FillNvfp4Kernel(uint8_t* codes, int64_t code_bytes, uint8_t* scales,
                                int64_t scale_bytes, float lo, float hi, uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < code_bytes;
       i += stride) {
    codes[i] = static_cast<uint8_t>(Mix(seed ^ Mix(static_cast<uint64_t>(i))) >> 56);
  }
  const float log_lo = __log2f(lo), log_hi = __log2f(hi);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < scale_bytes;
       i += stride) {
    const float v = exp2f(log_lo + (log_hi - log_lo) * Uniform(seed + 1, i));
    const uint32_t bits = __float_as_uint(v);
    const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 7;  // e4m3 bias 7
    const uint32_t mant = (bits >> 20) & 0x7;
    uint8_t b;
    if (exp <= 0) {
      b = 0x08;  // 2^-6: smallest normal, still finite and nonzero
    } else if (exp >= 15) {
      b = 0x7e;  // 448
    } else {
      b = static_cast<uint8_t>((exp << 3) | mant);
    }
    scales[i] = static_cast<uint8_t>(b + 24);
  }
}

}  // namespace

Status LaunchFillBf16(bf16* out, int64_t n, float stddev, uint64_t seed, cudaStream_t stream) {
  if (n <= 0) return Ok();
  FillBf16Kernel<<<8 * DeviceSmCount(), 256, 0, stream>>>(out, n, stddev, seed);
  GS_CUDA_CHECK_LAUNCH("FillBf16Kernel");
  return Ok();
}

Status LaunchFillNvfp4(uint8_t* codes, int64_t code_bytes, uint8_t* scales, int64_t scale_bytes,
                       float scale_lo, float scale_hi, uint64_t seed, cudaStream_t stream) {
  FillNvfp4Kernel<<<8 * DeviceSmCount(), 256, 0, stream>>>(codes, code_bytes, scales, scale_bytes,
                                                           scale_lo, scale_hi, seed);
  GS_CUDA_CHECK_LAUNCH("FillNvfp4Kernel");
  return Ok();
}

}  // namespace gs::cuda
