// The vision MLP's gate (reference gemma4 §4.3): from the fused gate/up projection fp32
// [rows, 2·I] (gate columns first), out[r, j] = bf16(gelu_tanh(gate[r, j]) · up[r, j]).
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

__global__ void GeluGluKernel(const float* __restrict__ gate_up, int64_t rows, int inter,
                              bf16* __restrict__ out) {
  const int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, j = i % inter;
    const float g = gate_up[r * 2 * inter + j], u = gate_up[r * 2 * inter + inter + j];
    const float k = 0.7978845608028654f;  // √(2/π)
    const float gelu = 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
    out[i] = __float2bfloat16_rn(gelu * u);
  }
}

}  // namespace

Status LaunchGeluGlu(const float* gate_up, int rows, int inter, bf16* out, cudaStream_t stream) {
  if (rows <= 0) return Ok();
  GeluGluKernel<<<8 * DeviceSmCount(), 256, 0, stream>>>(gate_up, rows, inter, out);
  GS_CUDA_CHECK_LAUNCH("GeluGluKernel");
  return Ok();
}

}  // namespace gs::cuda
