// BF16 GEMMs through cuBLASLt for the attention projections and the tied lm_head:
// out[M, N] = alpha · x[M, K] · W[N, K]ᵀ, bf16 inputs, fp32 accumulation, fp32 or bf16 output.
// Plans (descriptors + the heuristic's algorithm) are cached per shape.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>

#include "runtime/cuda/device_memory.h"
#include "util/status.h"

namespace gs::cuda {

class Bf16Gemm {
 public:
  Bf16Gemm() = default;
  ~Bf16Gemm();
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  Status Init();
  Status Run(const __nv_bfloat16* x, int m, int k, const __nv_bfloat16* w, int n, void* out,
             bool out_f32, float alpha, cudaStream_t stream);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Expected<Plan*> GetPlan(int m, int n, int k, bool out_f32);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<std::tuple<int, int, int, bool>, Plan> plans_;
};

}  // namespace gs::cuda
