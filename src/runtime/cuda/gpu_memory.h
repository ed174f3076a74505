// Free and total memory of a CUDA device (cudaMemGetInfo), for sizing the KV pool from
// --gpu-memory-utilization. Plain C++ header: no CUDA types.
#pragma once

#include <cstdint>

#include "util/status.h"

namespace gs {

struct GpuMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// Selects `device` (creating its context on first use) and reads its memory counters.
Expected<GpuMemoryInfo> QueryGpuMemory(int device = 0);

}  // namespace gs
