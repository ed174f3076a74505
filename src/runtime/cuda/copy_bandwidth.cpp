// Device-to-device copy bandwidth: the roofline benchmarks report achieved GB/s against.
#include <algorithm>
#include <vector>

#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/device_memory.h"

namespace gs {

Expected<double> MeasureCopyBandwidth(size_t bytes, int reps) {
  cuda::DeviceBuffer src, dst;
  GS_RETURN_IF_ERROR(src.Allocate(bytes, "copy source"));
  GS_RETURN_IF_ERROR(dst.Allocate(bytes, "copy destination"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(src.get(), 0x5a, bytes));
  cudaEvent_t start = nullptr, stop = nullptr;
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  std::vector<float> ms;
  Status st = Ok();
  for (int i = 0; i < reps + 3 && st.ok(); ++i) {
    float t = 0;
    st = cuda::CudaStatus(cudaEventRecord(start), "cudaEventRecord", __FILE__, __LINE__);
    if (st.ok()) {
      st = cuda::CudaStatus(cudaMemcpy(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice),
                            "cudaMemcpy D2D", __FILE__, __LINE__);
    }
    if (st.ok()) st = cuda::CudaStatus(cudaEventRecord(stop), "cudaEventRecord", __FILE__, __LINE__);
    if (st.ok()) {
      st = cuda::CudaStatus(cudaEventSynchronize(stop), "cudaEventSynchronize", __FILE__, __LINE__);
    }
    if (st.ok()) {
      st = cuda::CudaStatus(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime",
                            __FILE__, __LINE__);
    }
    if (i >= 3) ms.push_back(t);  // first copies are warm-up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  GS_RETURN_IF_ERROR(st);
  std::sort(ms.begin(), ms.end());
  const double median_s = ms[ms.size() / 2] / 1e3;
  return 2.0 * static_cast<double>(bytes) / median_s / 1e9;
}

}  // namespace gs
