// GEMMs through cuBLASLt: out[M, N] = alpha · x[M, K] · W[N, K]ᵀ. BF16 inputs with fp32
// accumulation and fp32 or bf16 output (attention projections, the tied lm_head), or all fp32
// (the router: CUBLAS_COMPUTE_32F, true fp32 FMAs, no TF32). Plans (descriptors + the
// heuristic's algorithm) are cached per shape and type.
//
// Decode sizes of the BF16 → fp32 product (alpha 1, Bf16GemvServes: M <= 32 by default) run our
// own weight-streaming kernel instead (LaunchBf16Gemv, bf16_gemv.cu): cuBLASLt reaches only
// 1.5-2.3 TB/s at M = 1 and, as an ordinary launch, breaks the PDL chain. GS_BF16_GEMV=0 keeps
// everything on cuBLASLt; GS_BF16_GEMV_MAX_M=<n> moves the threshold (kernels.h).
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
  Status RunF32(const float* x, int m, int k, const float* w, int n, float* out,
                cudaStream_t stream);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  enum class Types { kBf16InBf16Out, kBf16InF32Out, kF32 };
  Expected<Plan*> GetPlan(int m, int n, int k, Types types);
  Status Launch(const void* x, int m, int k, const void* w, int n, void* out, Types types,
                float alpha, cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  // cuBLASLt's workspace, also the GEMV's split partials: both are used only by kernels of the
  // same stream, one after the other.
  DeviceBuffer workspace_;
  DeviceBuffer gemv_counters_;  // the GEMV's per-tile counters, zero between launches
  std::map<std::tuple<int, int, int, Types>, Plan> plans_;
};

}  // namespace gs::cuda
