// gemmaserve bench-gemv: the decode-size BF16 products (attention q/k/v and o, the lm_head)
// through cuBLASLt and through the weight-streaming GEMV (bf16_gemv.cu): µs per product and
// achieved GB/s of weight reads per batch size, next to a device-to-device copy measured in the
// same run. Each variant runs as a CUDA graph of consecutive products, as in a decode step (the
// GEMV's PDL launches overlap their neighbours, cuBLASLt's do not), cycling over enough weight
// copies that the weights do not stay in the 50 MB L2. Medians of --reps graph launches.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/int_list.h"
#include "util/status.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/kernels.h"
#endif

namespace gs::cli {
namespace {

struct GemvShape {
  int n = 0, k = 0;
};

// "NxK,NxK,…"
Expected<std::vector<GemvShape>> ParseShapes(const std::string& text) {
  std::vector<GemvShape> out;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    GemvShape s;
    char x = 0;
    std::stringstream ps(part);
    if (!(ps >> s.n >> x >> s.k) || x != 'x' || !ps.eof() || s.n <= 0 || s.k <= 0 ||
        s.k % 8 != 0) {
      return MakeError("--shapes: '", part, "' is not NxK with K a multiple of 8");
    }
    out.push_back(s);
  }
  if (out.empty()) return MakeError("--shapes: empty list");
  return out;
}

#if GS_HAVE_CUDA
using cuda::bf16;

// Median seconds of one launch of `exec` over `reps` timed launches (after one warm-up).
Expected<double> TimeGraph(cudaGraphExec_t exec, cudaStream_t stream, int reps) {
  cudaEvent_t start = nullptr, stop = nullptr;
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  std::vector<float> ms;
  Status st = cuda::CudaStatus(cudaGraphLaunch(exec, stream), "cudaGraphLaunch", __FILE__,
                               __LINE__);
  for (int i = 0; i < reps && st.ok(); ++i) {
    float t = 0;
    cudaError_t err = cudaEventRecord(start, stream);
    if (err == cudaSuccess) err = cudaGraphLaunch(exec, stream);
    if (err == cudaSuccess) err = cudaEventRecord(stop, stream);
    if (err == cudaSuccess) err = cudaEventSynchronize(stop);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&t, start, stop);
    st = cuda::CudaStatus(err, "timed graph launch", __FILE__, __LINE__);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  GS_RETURN_IF_ERROR(st);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] / 1e3;
}

// Captures `launches` products (weight copy i % copies each) issued by `issue(copy)` and returns
// the median seconds per product.
template <typename Issue>
Expected<double> TimeProducts(cudaStream_t stream, int launches, int copies, int reps,
                              Issue&& issue) {
  for (int c = 0; c < copies; ++c) GS_RETURN_IF_ERROR(issue(c));  // warm-up, plans, outside
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  GS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  Status st = Ok();
  for (int i = 0; i < launches && st.ok(); ++i) st = issue(i % copies);
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  GS_RETURN_IF_ERROR(st);
  GS_CUDA_RETURN_IF_ERROR(end);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  GS_CUDA_RETURN_IF_ERROR(inst);
  Expected<double> t = TimeGraph(exec, stream, reps);
  cudaGraphExecDestroy(exec);
  if (!t) return t.error();
  return *t / launches;
}

int RunGemvBench(const std::vector<GemvShape>& shapes, const std::vector<int>& batches,
                 const std::vector<int>& split_list, int reps) {
  auto copy_bw = MeasureCopyBandwidth();
  if (!copy_bw) return Fail("bench-gemv", copy_bw.error().message);
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n\n", *copy_bw);
  cuda::Bf16Gemm gemm;
  if (auto st = gemm.Init(); !st.ok()) return Fail("bench-gemv", st.error().message);
  cuda::DeviceBuffer partials, counters;
  if (auto st = partials.Allocate(32u << 20, "GEMV partials"); !st.ok()) {
    return Fail("bench-gemv", st.error().message);
  }
  if (auto st = counters.Allocate(16384 * sizeof(int), "GEMV counters"); !st.ok()) {
    return Fail("bench-gemv", st.error().message);
  }
  cudaMemset(counters.get(), 0, counters.bytes());
  cuda::Bf16GemvWorkspace ws;
  ws.partials = partials.get<float>();
  ws.partial_bytes = partials.bytes();
  ws.counters = counters.get<int>();
  ws.num_counters = 16384;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    return Fail("bench-gemv", "cudaStreamCreate failed");
  }
  const int max_m = *std::max_element(batches.begin(), batches.end());
  std::printf("%7s %5s %3s  %-14s %9s %8s %8s\n", "N", "K", "M", "kernel", "us", "GB/s",
              "vs cuBLAS");
  int rc = 0;
  for (const GemvShape& s : shapes) {
    const size_t w_bytes = static_cast<size_t>(s.n) * s.k * sizeof(bf16);
    // Enough copies to overflow L2 (>= 256 MB in all), at most 8.
    const int copies = static_cast<int>(
        std::clamp<size_t>((size_t{256} << 20) / w_bytes + 1, size_t{1}, size_t{8}));
    const int launches = std::max(copies, 8);
    std::vector<cuda::DeviceBuffer> w(static_cast<size_t>(copies));
    cuda::DeviceBuffer x, out;
    Status st = x.Allocate(static_cast<size_t>(max_m) * s.k * sizeof(bf16), "x");
    if (st.ok()) st = out.Allocate(static_cast<size_t>(max_m) * s.n * sizeof(float), "out");
    for (int c = 0; c < copies && st.ok(); ++c) {
      st = w[static_cast<size_t>(c)].Allocate(w_bytes, "weights");
      if (st.ok()) {
        st = cuda::LaunchFillBf16(w[static_cast<size_t>(c)].get<bf16>(),
                                  static_cast<int64_t>(s.n) * s.k, 0.05f, 100 + c, stream);
      }
    }
    if (st.ok()) {
      st = cuda::LaunchFillBf16(x.get<bf16>(), static_cast<int64_t>(max_m) * s.k, 1.0f, 7,
                                stream);
    }
    if (!st.ok()) return Fail("bench-gemv", st.error().message);
    for (int m : batches) {
      auto row = [&](const char* name, double sec, double base) {
        std::printf("%7d %5d %3d  %-14s %9.2f %8.0f %8.2fx\n", s.n, s.k, m, name, sec * 1e6,
                    static_cast<double>(w_bytes) / sec / 1e9, base / sec);
      };
      cuda::SetBf16GemvPolicy(false, 0);
      auto cublas = TimeProducts(stream, launches, copies, reps, [&](int c) {
        return gemm.Run(x.get<bf16>(), m, s.k, w[static_cast<size_t>(c)].get<bf16>(), s.n,
                        out.get(), true, 1.0f, stream);
      });
      if (!cublas) return Fail("bench-gemv", cublas.error().message);
      row("cuBLASLt", *cublas, *cublas);
      for (int splits : split_list) {
        auto gemv = TimeProducts(stream, launches, copies, reps, [&](int c) {
          return cuda::LaunchBf16Gemv(x.get<bf16>(), m, s.k, w[static_cast<size_t>(c)].get<bf16>(),
                                      s.n, out.get<float>(), ws, stream, splits);
        });
        if (!gemv) {
          std::fprintf(stderr, "  splits %d: %s\n", splits, gemv.error().message.c_str());
          rc = 1;
          continue;
        }
        const int used = splits > 0 ? splits : cuda::Bf16GemvSplits(m, s.n, s.k, ws);
        const std::string name = std::string("GEMV ") + (splits > 0 ? "s=" : "auto s=") +
                                 std::to_string(used);
        row(name.c_str(), *gemv, *cublas);
      }
    }
  }
  cuda::SetBf16GemvPolicy(true, 32);
  cudaStreamDestroy(stream);
  return rc;
}
#endif  // GS_HAVE_CUDA

}  // namespace

int RunBenchGemv(int argc, char** argv) {
  CLI::App app{
      "Decode-size BF16 products (attention q/k/v and o, lm_head): cuBLASLt against the\n"
      "weight-streaming GEMV, us and GB/s of weight reads per batch size, each as a CUDA graph\n"
      "of consecutive products over weight copies larger than L2."};
  std::string shapes_text = "8192x2816,9216x2816,2816x4096,2816x8192,262144x2816";
  std::string batches_text = "1,2,4,8,16,32,64", splits_text = "0";
  int reps = 20;
  app.add_option("--shapes", shapes_text, "products NxK (W is [N, K]), comma-separated");
  app.add_option("--batch-sizes", batches_text, "token counts M, comma-separated");
  app.add_option("--splits", splits_text,
                 "GEMV k-splits per tile to time, comma-separated (0 = automatic choice)");
  app.add_option("--reps", reps, "timed graph launches per variant (median)")
      ->check(CLI::Range(1, 10000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto shapes = ParseShapes(shapes_text);
  if (!shapes) return Fail("bench-gemv", shapes.error().message);
  auto batches = ParseIntList(batches_text, "--batch-sizes", 1, false);
  if (!batches) return Fail("bench-gemv", batches.error().message);
  auto splits = ParseIntList(splits_text, "--splits", 0, false);
  if (!splits) return Fail("bench-gemv", splits.error().message);
#if GS_HAVE_CUDA
  return RunGemvBench(*shapes, *batches, *splits, reps);
#else
  return Fail("bench-gemv", "this gemmaserve was built without CUDA (nvcc was not found when it "
                            "was configured); the benchmark needs the GPU");
#endif
}

}  // namespace gs::cli
