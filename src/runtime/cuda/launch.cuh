// Kernel launches with programmatic dependent launch (PDL, sm_90+).
//
// A decode step is ~15 small kernels per layer, each latency-bound: without PDL a kernel starts
// only after the previous one has fully drained, so every launch pays the previous kernel's tail
// plus its own ramp-up. LaunchKernel() launches with cudaLaunchAttributeProgrammaticStreamSerialization:
// the kernel may then start as soon as the previous kernel in the stream has triggered (see
// TriggerDependents) or exited, and runs its prologue (index math, loading weights) while the
// previous kernel finishes.
//
// The rule every kernel launched through LaunchKernel() obeys (the attribute makes it a
// requirement, not an option):
//   1. All threads execute GridDependencyWait() before their first read of anything an earlier
//      kernel of the stream wrote (activations, metadata, routing tables, the KV cache) and before
//      their first global write (an early write could clobber data the previous kernel still
//      reads). Only weights and other constants (never written by a kernel of the step) may be
//      read before it; that overlap is the point.
//   2. Every block waits — also blocks that would return early without doing any work, and
//      kernels that seem to need nothing from the previous one: the wait is what makes ordering
//      transitive. Kernel C waits only for its direct predecessor B; B's completion implies A's
//      completion only because B waited for A before finishing.
//   3. TriggerDependents() is called early only by kernels whose grid is resident in one wave
//      (decode-size grids); larger grids leave it to the implicit trigger at block exit.
// cuBLASLt and copies in the same stream stay ordinary launches: a PDL kernel after an ordinary
// kernel simply starts when that one has completed, and an ordinary kernel after a PDL kernel
// waits for its full completion, so mixing is always correct.
//
// CUDA graph capture records the attribute as programmatic edges between kernel nodes (CUDA
// 12.3+); event fork/join edges between streams stay full dependencies.
//
// GS_PDL=0 (read once) launches without the attribute: GridDependencyWait() and
// TriggerDependents() are then no-ops and every kernel starts after its predecessor completed.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/cuda/cuda_check.h"
#include "util/status.h"

namespace gs::cuda {

// Blocks until every kernel this grid depends on (the previous kernel of the stream, or the
// graph's programmatic predecessors) has completed and its memory operations are visible. When
// the kernel was launched without PDL, its predecessors are already complete and this returns at
// once. Safe to call any number of times, from any thread.
__device__ __forceinline__ void GridDependencyWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Signals that this block no longer holds back the launch of the dependent grid: once every block
// has signalled (or exited), the next PDL kernel of the stream may start its blocks. It grants no
// visibility of this grid's writes — the dependent still waits for our completion in its
// GridDependencyWait() — so it is safe anywhere; calling it early only lets the next kernel's
// prologue overlap our work. It pays off when the whole grid is resident at once: in a grid of
// several waves the last wave's blocks trigger only when they start, and the dependent's spinning
// blocks would share the SMs with that wave.
__device__ __forceinline__ void TriggerDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// True when the grid has at most one block per SM, so it is certainly resident in one wave (the
// kernels whose grids grow with the token count trigger early only then).
__device__ __forceinline__ bool GridFitsOneWave() {
  unsigned sms;
  asm("mov.u32 %0, %%nsmid;\n" : "=r"(sms));
  return gridDim.x * gridDim.y * gridDim.z <= sms;
}

// TriggerDependents() when GridFitsOneWave().
__device__ __forceinline__ void TriggerDependentsIfOneWave() {
  if (GridFitsOneWave()) TriggerDependents();
}

// Whether launches use PDL: on for devices of compute capability 9.0+, off with GS_PDL=0. Read
// once (the first launch) for the whole process.
inline bool PdlEnabled() {
  static const bool on = [] {
    const char* env = std::getenv("GS_PDL");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      return false;
    }
    return major >= 9;
  }();
  return on;
}

// How many blocks of `kernel` (block threads, smem bytes) the device holds at once, 0 when the
// query fails: a grid up to this size runs in one wave, so its kernel may trigger its dependents
// early (kernels whose occupancy the device-side GridFitsOneWave() underestimates get this as a
// launch argument). Callers cache it per kernel.
template <typename... KernelArgs>
int ResidentBlocks(void (*kernel)(KernelArgs...), int threads, size_t smem) {
  int per_sm = 0, device = 0, sms = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) !=
          cudaSuccess ||
      cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return per_sm * sms;
}

// What a launch asks of the device beyond its grid: thread-block clusters of `cluster` blocks
// (1×1×1: none), and the shared-memory share of the SM's unified L1/shared storage, in percent
// (-1: the driver's choice). Left to the driver, the decode attention (75-141 KB a block) ran as
// if its share held the most blocks that fit, which leaves L1 almost nothing; a grid of a block
// or two per SM needs only that many blocks' share (batch 1 +2-3% on the H100 with it,
// docs/benchmarks.md session 10). A hint: the driver may round it, results never depend on it.
struct LaunchExtras {
  dim3 cluster = dim3(1, 1, 1);
  int carveout_percent = -1;
};

// kernel<<<grid, block, smem, stream>>>(args...) with `extras`, with programmatic stream
// serialization when PdlEnabled(). Like GS_CUDA_CHECK_LAUNCH, a bad configuration or an earlier
// asynchronous fault becomes an error naming the kernel. The kernel must follow the rule above.
template <typename... KernelArgs, typename... Args>
Status LaunchKernelWith(const char* name, void (*kernel)(KernelArgs...), dim3 grid,
                        const LaunchExtras& extras, dim3 block, size_t smem, cudaStream_t stream,
                        Args&&... args) {
  const dim3 cluster = extras.cluster;
  cudaLaunchAttribute attr[3];
  int n = 0;
  if (PdlEnabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n++].val.clusterDim.z = cluster.z;
  }
  if (extras.carveout_percent >= 0) {
    attr[n].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
    attr[n++].val.sharedMemCarveout = static_cast<unsigned>(extras.carveout_percent);
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = n;
  cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  const cudaError_t last = cudaGetLastError();  // clears the error state, as the <<<>>> checks do
  if (err == cudaSuccess) err = last;
  if (err == cudaSuccess) return Ok();
  return MakeError("CUDA error in launch of ", name, " (grid ", grid.x, "x", grid.y, "x", grid.z,
                   ", cluster ", cluster.x, "x", cluster.y, "x", cluster.z, ", block ", block.x,
                   ", ", smem, " B shared, PDL ", PdlEnabled() ? "on" : "off", "): ",
                   cudaGetErrorName(err), ": ", cudaGetErrorString(err));
}

// LaunchKernelWith in thread-block clusters of `cluster` blocks.
template <typename... KernelArgs, typename... Args>
Status LaunchClusterKernel(const char* name, void (*kernel)(KernelArgs...), dim3 grid,
                           dim3 cluster, dim3 block, size_t smem, cudaStream_t stream,
                           Args&&... args) {
  LaunchExtras extras;
  extras.cluster = cluster;
  return LaunchKernelWith(name, kernel, grid, extras, block, smem, stream,
                          std::forward<Args>(args)...);
}

// LaunchClusterKernel without clusters.
template <typename... KernelArgs, typename... Args>
Status LaunchKernel(const char* name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                    size_t smem, cudaStream_t stream, Args&&... args) {
  return LaunchClusterKernel(name, kernel, grid, dim3(1, 1, 1), block, smem, stream,
                             std::forward<Args>(args)...);
}

}  // namespace gs::cuda
