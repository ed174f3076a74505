// What a kernel boundary costs in a PDL chain, and what folding a one-block kernel into the tail
// of the grid before it (the "last block" pattern) saves. A decode step at batch 1 is a chain of
// ~8 kernels a layer; several are one block (post-attention, FFN combine) that reduce the output
// of a wide grid (o GEMV, expert down). This tool times, as CUDA graphs of 64 links each:
//
//   small    a chain of one-block kernels (read a value, a block reduction, write it): the cost
//            of one boundary between tiny kernels;
//   wide     a chain of wide grids (528 blocks × 256 threads) that each stream the table's
//            weight bytes (a third before the PDL wait, like our GEMVs) and write one partial a
//            block;
//   pair     wide → small, alternating: the small kernel sums the wide grid's partials;
//   fused    the same work as pair in one kernel a link: each wide block publishes its partial
//            (__threadfence, atomicAdd on a counter) and the block that counts last sums them.
//
// µs a link = graph time / 64. pair − fused is what folding a one-block reduction into its
// predecessor saves on this card. Build: nvcc -O3 -arch=sm_90a (CMake target
// gs_pdl_boundary_bench); run: scripts/gpu/pdl_boundary.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr int kLinks = 64;
constexpr int kWideBlocks = 528;
constexpr int kThreads = 256;

#define CHECK(call)                                                                    \
  do {                                                                                 \
    cudaError_t e = (call);                                                            \
    if (e != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

__device__ __forceinline__ void Wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void Trigger() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One value through a block reduction: x[0] ← 0.5·x[0] + Σ partials / n (n = 0: x[0] alone).
__device__ void SmallBody(float* x, const float* partials, int n) {
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += __ldcg(partials + i);
  s = BlockSum(s) + (threadIdx.x == 0 ? 0.5f * __ldcg(x) : 0.0f);
  if (threadIdx.x == 0) x[0] = s / (n + 1);
}

__global__ void SmallKernel(float* x, const float* partials, int n) {
  Wait();
  Trigger();
  SmallBody(x, partials, n);
}

// Streams `per_thread` uint4s of w (strided over the grid, a third loaded before the wait) and
// writes partials[block] from them and x[0].
__device__ float WideBody(const float* x, const uint4* w, int per_thread) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const uint4* p = w + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int early = per_thread / 3;
  unsigned acc = 0;
  uint4 pre[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) pre[i] = i < early ? __ldcs(p + i * stride) : make_uint4(0, 0, 0, 0);
  Wait();
  Trigger();
  const float xv = __ldcg(x);
#pragma unroll
  for (int i = 0; i < 8; ++i) acc ^= pre[i].x ^ pre[i].y ^ pre[i].z ^ pre[i].w;
  for (int i = early < 8 ? early : 8; i < per_thread; i += 4) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = i + j < per_thread ? __ldcs(p + (i + j) * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 4; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  // acc is ~never 0xFFFFFFFF: the term keeps the loads without changing the value.
  return BlockSum(xv + (acc == 0xFFFFFFFFu ? 1.0f : 0.0f)) / blockDim.x;
}

__global__ void WideKernel(const float* x, float* partials, const uint4* w, int per_thread) {
  const float v = WideBody(x, w, per_thread);
  if (threadIdx.x == 0) partials[blockIdx.x] = v;
}

__global__ void FusedKernel(float* x, float* partials, const uint4* w, int per_thread,
                            int* counter) {
  __shared__ bool last;
  const float v = WideBody(x, w, per_thread);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = v;
    __threadfence();
    last = atomicAdd(counter, 1) == static_cast<int>(gridDim.x) - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  SmallBody(x, partials, gridDim.x);
  if (threadIdx.x == 0) *counter = 0;
}

template <typename... Params, typename... Args>
void Launch(void (*kernel)(Params...), int blocks, cudaStream_t s, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.stream = s;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...));
}

struct Buffers {
  float* x;
  float* partials;
  uint4* w;
  int* counter;
};

// Records kLinks links of `variant` into a graph and returns µs a link (median of 7 timings of
// 20 replays each).
float TimeVariant(const char* variant, const Buffers& b, int per_thread, cudaStream_t s) {
  cudaGraph_t graph;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < kLinks; ++i) {
    const std::string v = variant;
    if (v == "small") {
      Launch(SmallKernel, 1, s, b.x, b.partials, 0);
    } else if (v == "wide") {
      Launch(WideKernel, kWideBlocks, s, b.x, b.partials, b.w, per_thread);
    } else if (v == "pair") {
      Launch(WideKernel, kWideBlocks, s, b.x, b.partials, b.w, per_thread);
      Launch(SmallKernel, 1, s, b.x, b.partials, kWideBlocks);
    } else {
      Launch(FusedKernel, kWideBlocks, s, b.x, b.partials, b.w, per_thread, b.counter);
    }
  }
  CHECK(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i) CHECK(cudaGraphLaunch(exec, s));
  std::vector<float> ms;
  for (int r = 0; r < 7; ++r) {
    CHECK(cudaEventRecord(e0, s));
    for (int i = 0; i < 20; ++i) CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(e1, s));
    CHECK(cudaEventSynchronize(e1));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  return ms[3] * 1000.0f / (20 * kLinks);
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int max_per_thread = 48;  // 48 × 16 B × 528 × 256 = 104 MB
  Buffers b;
  const size_t w_bytes = static_cast<size_t>(max_per_thread) * kWideBlocks * kThreads * 16;
  CHECK(cudaMalloc(&b.x, sizeof(float)));
  CHECK(cudaMalloc(&b.partials, kWideBlocks * sizeof(float)));
  CHECK(cudaMalloc(&b.w, w_bytes));
  CHECK(cudaMalloc(&b.counter, sizeof(int)));
  CHECK(cudaMemset(b.x, 0, sizeof(float)));
  CHECK(cudaMemset(b.partials, 0, kWideBlocks * sizeof(float)));
  CHECK(cudaMemset(b.w, 1, w_bytes));
  CHECK(cudaMemset(b.counter, 0, sizeof(int)));
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("device: %s; graphs of %d PDL links; wide = %d blocks x %d threads\n", prop.name,
              kLinks, kWideBlocks, kThreads);
  std::printf("| weights a wide grid | small us | wide us | pair us | fused us | pair - fused |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (int per_thread : {0, 3, 12, 24, 48}) {
    const double mb = per_thread * 16.0 * kWideBlocks * kThreads / 1e6;
    const float small = TimeVariant("small", b, per_thread, s);
    const float wide = TimeVariant("wide", b, per_thread, s);
    const float pair = TimeVariant("pair", b, per_thread, s);
    const float fused = TimeVariant("fused", b, per_thread, s);
    std::printf("| %.1f MB | %.2f | %.2f | %.2f | %.2f | %.2f |\n", mb, small, wide, pair, fused,
                pair - fused);
  }
  float x = 0;
  CHECK(cudaMemcpy(&x, b.x, sizeof(float), cudaMemcpyDeviceToHost));
  std::printf("(checksum %g)\n", x);
  return 0;
}
