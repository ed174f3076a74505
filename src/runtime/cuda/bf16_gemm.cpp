#include "runtime/cuda/bf16_gemm.h"

#include <cstdint>

#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {
constexpr size_t kWorkspaceBytes = 32u << 20;
// (chunk, tile) cells a split GEMV may have: splits are used only for grids of a few waves,
// far below this (the device holds ~1000 blocks).
constexpr int kGemvCounters = 16384;

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
}  // namespace

Bf16Gemm::~Bf16Gemm() {
  for (auto& [key, p] : plans_) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  if (handle_) cublasLtDestroy(handle_);
}

Status Bf16Gemm::Init() {
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle_));
  GS_RETURN_IF_ERROR(workspace_.Allocate(kWorkspaceBytes, "cuBLASLt workspace"));
  GS_RETURN_IF_ERROR(gemv_counters_.Allocate(kGemvCounters * sizeof(int), "BF16 GEMV counters"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(gemv_counters_.get(), 0, gemv_counters_.bytes()));
  return Ok();
}

// cuBLAS is column-major: the row-major out[M, N] is the column-major outᵀ [N, M] = W·xᵀ, with
// W (row-major [N, K]) read as the column-major [K, N] matrix transposed, and x (row-major
// [M, K]) as the column-major [K, M] matrix.
Expected<Bf16Gemm::Plan*> Bf16Gemm::GetPlan(int m, int n, int k, Types types) {
  const auto key = std::make_tuple(m, n, k, types);
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  Plan p;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  GS_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  GS_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  const cudaDataType_t in = types == Types::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  const cudaDataType_t out = types == Types::kBf16InBf16Out ? CUDA_R_16BF : CUDA_R_32F;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.a, in, k, n, k));
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.b, in, k, m, k));
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.c, out, n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = kWorkspaceBytes;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result,
                                        &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
    return MakeError("cuBLASLt found no ", types == Types::kF32 ? "FP32" : "BF16",
                     " GEMM algorithm for M=", m, " N=", n, " K=", k,
                     " (status ", static_cast<int>(st), ")");
  }
  p.algo = result.algo;
  return &plans_.emplace(key, p).first->second;
}

Status Bf16Gemm::Launch(const void* x, int m, int k, const void* w, int n, void* out,
                        Types types, float alpha, cudaStream_t stream) {
  if (m <= 0) return Ok();
  GS_ASSIGN_OR_RETURN(Plan * p, GetPlan(m, n, k, types));
  const float beta = 0.0f;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, p->desc, &alpha, w, p->a, x, p->b, &beta, out,
                                           p->c, out, p->c, &p->algo, workspace_.get(),
                                           workspace_.bytes(), stream));
  return Ok();
}

Status Bf16Gemm::Run(const __nv_bfloat16* x, int m, int k, const __nv_bfloat16* w, int n,
                     void* out, bool out_f32, float alpha, cudaStream_t stream) {
  if (out_f32 && alpha == 1.0f && Bf16GemvServes(m, n, k) && Aligned16(x) && Aligned16(w)) {
    Bf16GemvWorkspace ws;
    ws.partials = workspace_.get<float>();
    ws.partial_bytes = workspace_.bytes();
    ws.counters = gemv_counters_.get<int>();
    ws.num_counters = static_cast<int>(gemv_counters_.bytes() / sizeof(int));
    return LaunchBf16Gemv(x, m, k, w, n, static_cast<float*>(out), ws, stream);
  }
  return Launch(x, m, k, w, n, out, out_f32 ? Types::kBf16InF32Out : Types::kBf16InBf16Out, alpha,
                stream);
}

Status Bf16Gemm::RunF32(const float* x, int m, int k, const float* w, int n, float* out,
                        cudaStream_t stream) {
  return Launch(x, m, k, w, n, out, Types::kF32, 1.0f, stream);
}

}  // namespace gs::cuda
