#include "runtime/cuda/bf16_gemm.h"

namespace gs::cuda {
namespace {
constexpr size_t kWorkspaceBytes = 32u << 20;
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
  return workspace_.Allocate(kWorkspaceBytes, "cuBLASLt workspace");
}

// cuBLAS is column-major: the row-major out[M, N] is the column-major outᵀ [N, M] = W·xᵀ, with
// W (row-major [N, K]) read as the column-major [K, N] matrix transposed, and x (row-major
// [M, K]) as the column-major [K, M] matrix.
Expected<Bf16Gemm::Plan*> Bf16Gemm::GetPlan(int m, int n, int k, bool out_f32) {
  const auto key = std::make_tuple(m, n, k, out_f32);
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  Plan p;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  GS_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  GS_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k));
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, m, k));
  GS_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&p.c, out_f32 ? CUDA_R_32F : CUDA_R_16BF, n, m, n));
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
    return MakeError("cuBLASLt found no BF16 GEMM algorithm for M=", m, " N=", n, " K=", k,
                     " (status ", static_cast<int>(st), ")");
  }
  p.algo = result.algo;
  return &plans_.emplace(key, p).first->second;
}

Status Bf16Gemm::Run(const __nv_bfloat16* x, int m, int k, const __nv_bfloat16* w, int n,
                     void* out, bool out_f32, float alpha, cudaStream_t stream) {
  if (m <= 0) return Ok();
  GS_ASSIGN_OR_RETURN(Plan * p, GetPlan(m, n, k, out_f32));
  const float beta = 0.0f;
  GS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, p->desc, &alpha, w, p->a, x, p->b, &beta, out,
                                           p->c, out, p->c, &p->algo, workspace_.get(),
                                           workspace_.bytes(), stream));
  return Ok();
}

}  // namespace gs::cuda
