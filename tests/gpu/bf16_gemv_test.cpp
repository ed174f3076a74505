// The decode BF16 GEMV (bf16_gemv.cu) against a CPU double-precision reference: the model's
// attention / o_proj shapes and odd ones (N not a multiple of 16, K not a multiple of 32,
// several 64-token chunks) at every k-split choice; integer inputs where fp32 accumulation is
// exact (any mismatch of the A and B k-permutations shows as a wrong integer); bit-identical
// repeats, also from a CUDA graph; x produced by a PDL-launched kernel right before; the
// Bf16Gemm::Run dispatch against cuBLASLt; the policy and the error paths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/kernels.h"
#include "util/thread_pool.h"

namespace gs {
namespace {

using cuda::bf16;
using gputest::DeviceArray;

// Σ x·w per output and Σ |x·w| (the scale of fp32 accumulation error), [m, n], in double.
struct Reference {
  std::vector<double> sum, abs_sum;
};

Reference CpuReference(const std::vector<float>& x, const std::vector<float>& w, int m, int n,
                       int k, ThreadPool& pool) {
  Reference r;
  r.sum.assign(static_cast<size_t>(m) * n, 0.0);
  r.abs_sum.assign(r.sum.size(), 0.0);
  pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const float* wr = w.data() + j * k;
      for (int t = 0; t < m; ++t) {
        const float* xr = x.data() + static_cast<int64_t>(t) * k;
        double s = 0, a = 0;
        for (int i = 0; i < k; ++i) {
          const double p = static_cast<double>(xr[i]) * wr[i];
          s += p;
          a += std::fabs(p);
        }
        r.sum[static_cast<size_t>(t) * n + j] = s;
        r.abs_sum[static_cast<size_t>(t) * n + j] = a;
      }
    }
  });
  return r;
}

// fp32 accumulation of bf16 products (exact products, ~K/16 + splits rounded additions per
// output): the error stays far below 1e-4 of Σ|x·w|; a wrong k pairing or a lost chunk is of
// the order of the sum itself. Returns the number of outputs outside the bound (NaN included).
int CountOutside(const std::vector<float>& got, const Reference& ref, double rel,
                 const std::string& what) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref.sum[i]);
    if (!(err <= rel * ref.abs_sum[i] + 1e-30)) {
      if (bad < 3) {
        ADD_FAILURE() << what << ": output " << i << " = " << got[i] << ", want " << ref.sum[i]
                      << " (Σ|x·w| " << ref.abs_sum[i] << ")";
      }
      ++bad;
    }
  }
  return bad;
}

std::vector<float> IntegerValues(size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> dist(-4, 4);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

// A workspace as Bf16Gemm holds one: 32 MB of partials and zeroed counters.
class Workspace {
 public:
  Workspace() : partials_((32u << 20) / sizeof(float)), counters_(16384) {
    EXPECT_EQ(cudaMemset(counters_.get(), 0, counters_.size() * sizeof(int)), cudaSuccess);
  }
  cuda::Bf16GemvWorkspace view() const {
    cuda::Bf16GemvWorkspace ws;
    ws.partials = partials_.get();
    ws.partial_bytes = partials_.size() * sizeof(float);
    ws.counters = counters_.get();
    ws.num_counters = static_cast<int>(counters_.size());
    return ws;
  }
  // Every launch must leave its counters at 0 (the next launch and graph replays rely on it).
  int NonzeroCounters() const {
    int nonzero = 0;
    for (int c : counters_.Download()) nonzero += c != 0;
    return nonzero;
  }

 private:
  DeviceArray<float> partials_;
  DeviceArray<int> counters_;
};

struct DeviceProblem {
  DeviceArray<bf16> x, w;
  DeviceArray<float> out;
  DeviceProblem(const std::vector<float>& xv, const std::vector<float>& wv, size_t outputs) {
    x.Upload(gputest::ToBf16(xv));
    w.Upload(gputest::ToBf16(wv));
    out.Resize(outputs);
  }
};

// Runs the GEMV (out poisoned first) and returns its output.
std::vector<float> RunGemv(DeviceProblem& p, int m, int n, int k, const Workspace& ws,
                           int splits) {
  p.out.Poison();
  const Status st =
      cuda::LaunchBf16Gemv(p.x.get(), m, k, p.w.get(), n, p.out.get(), ws.view(), nullptr, splits);
  EXPECT_TRUE(st.ok()) << st.error().message;
  return p.out.Download();
}

struct Shape {
  int n, k;
};

TEST(Bf16Gemv, MatchesCpuAtModelAndOddShapes) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(11);
  ThreadPool pool(0);
  Workspace ws;
  // The model's q/k/v (sliding, global) and o (sliding, global), then odd shapes: N not a
  // multiple of 16, K not a multiple of 32, a single step, a single row.
  const std::vector<Shape> shapes = {{8192, 2816}, {2816, 4096}, {2816, 8192}, {9216, 2816},
                                     {16, 8},      {48, 72},     {4112, 520},  {40, 8200},
                                     {1, 24}};
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape s = shapes[si];
    const auto w = gputest::RandomBf16Values(static_cast<size_t>(s.n) * s.k, 0.05f, rng);
    std::vector<int> ms = {1, 3, 8, 17, 32, 64};
    if (si >= 4) ms.push_back(70);  // two 64-token chunks
    for (int m : ms) {
      const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * s.k, 1.0f, rng);
      const Reference ref = CpuReference(x, w, m, s.n, s.k, pool);
      DeviceProblem p(x, w, static_cast<size_t>(m) * s.n);
      const int auto_splits = cuda::Bf16GemvSplits(m, s.n, s.k, ws.view());
      std::printf("N=%d K=%d M=%d: %d automatic splits\n", s.n, s.k, m, auto_splits);
      for (int splits : {0, 1, 3}) {
        const std::string what = "N=" + std::to_string(s.n) + " K=" + std::to_string(s.k) +
                                 " M=" + std::to_string(m) + " splits " + std::to_string(splits);
        EXPECT_EQ(CountOutside(RunGemv(p, m, s.n, s.k, ws, splits), ref, 1e-4, what), 0) << what;
      }
    }
  }
  EXPECT_EQ(ws.NonzeroCounters(), 0);
}

// Integers in [-4, 4]: every product and partial sum (|Σ| <= 16·K < 2^24) is exact in fp32 in
// any order, so the GEMV must equal the reference exactly.
TEST(Bf16Gemv, IntegerInputsAreExact) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(12);
  ThreadPool pool(0);
  Workspace ws;
  for (const Shape s : {Shape{2816, 8192}, Shape{9216, 2816}, Shape{48, 72}, Shape{4112, 520}}) {
    const auto w = IntegerValues(static_cast<size_t>(s.n) * s.k, rng);
    for (int m : {1, 5, 17, 64, 70}) {
      const auto x = IntegerValues(static_cast<size_t>(m) * s.k, rng);
      const Reference ref = CpuReference(x, w, m, s.n, s.k, pool);
      DeviceProblem p(x, w, static_cast<size_t>(m) * s.n);
      for (int splits : {0, 1, 5}) {
        const auto got = RunGemv(p, m, s.n, s.k, ws, splits);
        int wrong = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (static_cast<double>(got[i]) != ref.sum[i] && wrong++ < 3) {
            ADD_FAILURE() << "N=" << s.n << " K=" << s.k << " M=" << m << " splits " << splits
                          << ": output " << i << " (token " << i / s.n << ", row " << i % s.n
                          << ") = " << got[i] << ", want " << ref.sum[i];
          }
        }
        EXPECT_EQ(wrong, 0) << "N=" << s.n << " K=" << s.k << " M=" << m << " splits " << splits;
      }
    }
  }
  EXPECT_EQ(ws.NonzeroCounters(), 0);
}

// Same inputs, same bits: directly (each split choice twice) and replayed from a CUDA graph.
// The k-splits of a tile summed in a thread-block cluster give the bits of the workspace path
// (same order: 0 + split 0 + split 1 + …), at every split count a cluster holds and at token
// counts of one, two and eight n-tiles.
TEST(Bf16Gemv, ClusterSumEqualsWorkspaceSum) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(29);
  Workspace ws;
  const int n = 2816, k = 4096;
  const auto w = gputest::RandomBf16Values(static_cast<size_t>(n) * k, 0.05f, rng);
  for (int m : {1, 9, 64}) {
    const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * k, 1.0f, rng);
    DeviceProblem p(x, w, static_cast<size_t>(m) * n);
    for (int splits : {2, 3, 5, 8}) {
      cuda::SetBf16GemvClusterSplits(true);
      const auto cluster = RunGemv(p, m, n, k, ws, splits);
      cuda::SetBf16GemvClusterSplits(false);
      const auto workspace = RunGemv(p, m, n, k, ws, splits);
      cuda::SetBf16GemvClusterSplits(true);
      EXPECT_EQ(ws.NonzeroCounters(), 0) << "M=" << m << " splits " << splits;
      EXPECT_EQ(std::memcmp(cluster.data(), workspace.data(), cluster.size() * sizeof(float)), 0)
          << "M=" << m << " splits " << splits;
    }
  }
}

TEST(Bf16Gemv, RunsAreBitIdentical) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(13);
  Workspace ws;
  const int n = 2816, k = 4096;
  const auto w = gputest::RandomBf16Values(static_cast<size_t>(n) * k, 0.05f, rng);
  for (int m : {1, 17, 64}) {
    const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * k, 1.0f, rng);
    DeviceProblem p(x, w, static_cast<size_t>(m) * n);
    for (int splits : {0, 1, 4}) {
      const auto a = RunGemv(p, m, n, k, ws, splits);
      const auto b = RunGemv(p, m, n, k, ws, splits);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << "M=" << m << " splits " << splits;
    }
    const auto direct = RunGemv(p, m, n, k, ws, 4);
    cudaStream_t stream = nullptr;
    GS_CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    GS_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (int rep = 0; rep < 2; ++rep) {  // two launches sharing the counters inside the graph
      GS_ASSERT_OK(cuda::LaunchBf16Gemv(p.x.get(), m, k, p.w.get(), n, p.out.get(), ws.view(),
                                        stream, 4));
    }
    GS_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
    GS_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
    for (int replay = 0; replay < 3; ++replay) {
      p.out.Poison();
      GS_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
      GS_CUDA_ASSERT(cudaStreamSynchronize(stream));
      const auto g = p.out.Download();
      EXPECT_EQ(std::memcmp(g.data(), direct.data(), g.size() * sizeof(float)), 0)
          << "M=" << m << " graph replay " << replay;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
  EXPECT_EQ(ws.NonzeroCounters(), 0);
}

// x written by a PDL-launched kernel (RMSNorm) just before: the GEMV may start early but must
// read x only after its GridDependencyWait (x is poisoned before the norm). Two GEMVs in a row
// share the workspace, as consecutive projections do.
TEST(Bf16Gemv, ReadsXOnlyAfterThePdlWait) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(14);
  ThreadPool pool(0);
  Workspace ws;
  const int k = 4096, n1 = 2816, n2 = 8192;
  const auto w1 = gputest::RandomBf16Values(static_cast<size_t>(n1) * k, 0.05f, rng);
  const auto w2 = gputest::RandomBf16Values(static_cast<size_t>(n2) * k, 0.05f, rng);
  DeviceArray<bf16> dw1, dw2;
  dw1.Upload(gputest::ToBf16(w1));
  dw2.Upload(gputest::ToBf16(w2));
  cudaStream_t stream = nullptr;
  GS_CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int m : {1, 8, 32}) {
    std::normal_distribution<float> dist(0.0f, 2.0f);
    std::vector<float> h(static_cast<size_t>(m) * k);
    for (float& v : h) v = dist(rng);
    DeviceArray<float> dh, out1(static_cast<size_t>(m) * n1), out2(static_cast<size_t>(m) * n2);
    dh.Upload(h);
    DeviceArray<bf16> x(static_cast<size_t>(m) * k);
    x.Poison();
    out1.Poison();
    out2.Poison();
    GS_CUDA_ASSERT(cudaDeviceSynchronize());
    GS_ASSERT_OK(cuda::LaunchRmsNorm(dh.get(), nullptr, m, k, nullptr, 1e-6f, x.get(), stream));
    GS_ASSERT_OK(
        cuda::LaunchBf16Gemv(x.get(), m, k, dw1.get(), n1, out1.get(), ws.view(), stream, 0));
    GS_ASSERT_OK(
        cuda::LaunchBf16Gemv(x.get(), m, k, dw2.get(), n2, out2.get(), ws.view(), stream, 3));
    GS_CUDA_ASSERT(cudaStreamSynchronize(stream));
    const auto xv = gputest::FromBf16(x.Download());
    EXPECT_EQ(CountOutside(out1.Download(), CpuReference(xv, w1, m, n1, k, pool), 1e-4, "first"),
              0) << "M=" << m;
    EXPECT_EQ(CountOutside(out2.Download(), CpuReference(xv, w2, m, n2, k, pool), 1e-4, "second"),
              0) << "M=" << m;
  }
  cudaStreamDestroy(stream);
  EXPECT_EQ(ws.NonzeroCounters(), 0);
}

// Bf16Gemm::Run with the GEMV policy on and off (cuBLASLt): both within the bound of the CPU
// reference and close to each other; bf16 outputs and alpha != 1 stay on cuBLASLt.
TEST(Bf16Gemv, Bf16GemmRunDispatchMatchesCublas) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(15);
  ThreadPool pool(0);
  cuda::Bf16Gemm gemm;
  GS_ASSERT_OK(gemm.Init());
  for (const Shape s : {Shape{8192, 2816}, Shape{2816, 4096}, Shape{2816, 8192}}) {
    const auto w = gputest::RandomBf16Values(static_cast<size_t>(s.n) * s.k, 0.05f, rng);
    for (int m : {1, 4, 17, 32, 64}) {
      const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * s.k, 1.0f, rng);
      const Reference ref = CpuReference(x, w, m, s.n, s.k, pool);
      DeviceProblem p(x, w, static_cast<size_t>(m) * s.n);
      std::vector<float> outs[2];
      for (int on = 0; on < 2; ++on) {
        cuda::SetBf16GemvPolicy(on == 1, 64);
        p.out.Poison();
        GS_ASSERT_OK(gemm.Run(p.x.get(), m, s.k, p.w.get(), s.n, p.out.get(), true, 1.0f,
                              nullptr));
        outs[on] = p.out.Download();
        const std::string what = std::string(on ? "GEMV" : "cuBLASLt") + " N=" +
                                 std::to_string(s.n) + " K=" + std::to_string(s.k) +
                                 " M=" + std::to_string(m);
        EXPECT_EQ(CountOutside(outs[on], ref, 1e-4, what), 0) << what;
      }
      EXPECT_LT(gputest::WorstRowRelL2(outs[1], outs[0], s.n), 1e-5) << "M=" << m;
      // alpha != 1 is cuBLASLt's even with the GEMV on: 2·x·Wᵀ.
      p.out.Poison();
      GS_ASSERT_OK(gemm.Run(p.x.get(), m, s.k, p.w.get(), s.n, p.out.get(), true, 2.0f, nullptr));
      std::vector<float> twice = p.out.Download();
      for (float& v : twice) v *= 0.5f;
      EXPECT_EQ(CountOutside(twice, ref, 1e-4, "alpha 2"), 0);
    }
  }
  cuda::SetBf16GemvPolicy(true, 32);
}

TEST(Bf16Gemv, PolicyServesSmallBatchesWithKMultipleOf8) {
  cuda::SetBf16GemvPolicy(true, 32);
  EXPECT_TRUE(cuda::Bf16GemvServes(1, 8192, 2816));
  EXPECT_TRUE(cuda::Bf16GemvServes(32, 2816, 8192));
  EXPECT_FALSE(cuda::Bf16GemvServes(33, 2816, 8192));
  EXPECT_FALSE(cuda::Bf16GemvServes(0, 2816, 8192));
  EXPECT_FALSE(cuda::Bf16GemvServes(4, 2816, 4100));
  cuda::SetBf16GemvPolicy(true, 64);
  EXPECT_TRUE(cuda::Bf16GemvServes(64, 262144, 2816));
  cuda::SetBf16GemvPolicy(false, 64);
  EXPECT_FALSE(cuda::Bf16GemvServes(1, 8192, 2816));
  cuda::SetBf16GemvPolicy(true, 32);
}

TEST(Bf16Gemv, RejectsBadShapesAlignmentAndWorkspace) {
  GS_REQUIRE_GPU();
  DeviceArray<bf16> x(64 * 80), w(64 * 80);
  DeviceArray<float> out(64 * 64);
  const cuda::Bf16GemvWorkspace none;
  auto message = [](const Status& st) { return st.ok() ? std::string() : st.error().message; };
  const Status k_odd = cuda::LaunchBf16Gemv(x.get(), 4, 12, w.get(), 64, out.get(), none, nullptr);
  EXPECT_NE(message(k_odd).find("K=12"), std::string::npos) << message(k_odd);
  const Status n_zero = cuda::LaunchBf16Gemv(x.get(), 4, 16, w.get(), 0, out.get(), none, nullptr);
  EXPECT_NE(message(n_zero).find("N=0"), std::string::npos) << message(n_zero);
  const Status unaligned =
      cuda::LaunchBf16Gemv(x.get() + 1, 4, 16, w.get(), 64, out.get(), none, nullptr);
  EXPECT_NE(message(unaligned).find("aligned"), std::string::npos) << message(unaligned);
  const Status no_ws = cuda::LaunchBf16Gemv(x.get(), 4, 64, w.get(), 64, out.get(), none,
                                            nullptr, 2);
  EXPECT_NE(message(no_ws).find("workspace"), std::string::npos) << message(no_ws);
  // No tokens: nothing to do, nothing written.
  out.Poison();
  GS_ASSERT_OK(cuda::LaunchBf16Gemv(x.get(), 0, 64, w.get(), 64, out.get(), none, nullptr));
  for (float v : out.Download()) ASSERT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace gs
