// GPU sampling (cuda/sampling.cu LaunchSample, CudaRunner::ForwardSample) against the exact
// truncated distribution of runtime/sampling.cpp's definitions, recomputed here in double with a
// sort: top-k (ties at the k-th value: lower ids kept), top-p over the renormalized top-k set
// (shortest prefix of the order logit desc / id asc whose mass reaches top_p), min-p relative to
// the top probability. Checks: chi-square and total variation of 200k draws on rows with many
// ties, for several (T, top_k, top_p, min_p) including the "off" values; set membership at the
// full width 262144; greedy = argmax; determinism independent of row position and batch size;
// logprobs = log_softmax; and the runner path (graphs included) on the demo model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/cuda/kernels.h"
#include "runtime/sampling.h"
#include "tools/demo_model.h"

namespace gs {
namespace {

using gputest::DeviceArray;

struct Params {
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
};

std::string Describe(const Params& p) {
  return "T " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) + " top_p " +
         std::to_string(p.top_p) + " min_p " + std::to_string(p.min_p);
}

// Ids in the sampler's order: logit descending, id ascending.
std::vector<int> Order(const std::vector<float>& l) {
  std::vector<int> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  return order;
}

// The exact distribution of one draw (0 outside the kept set), in double.
std::vector<double> TruncatedProbs(const std::vector<float>& l, const Params& p) {
  const std::vector<int> order = Order(l);
  const size_t n = l.size();
  const size_t keep = p.top_k > 0 && static_cast<size_t>(p.top_k) < n ? p.top_k : n;
  std::vector<double> w(keep);
  double z = 0;
  for (size_t i = 0; i < keep; ++i) {
    z += w[i] = std::exp((static_cast<double>(l[order[i]]) - l[order[0]]) / p.temperature);
  }
  size_t cut = keep;
  if (p.top_p < 1) {
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += w[i] / z;
      if (cum >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0) {
    size_t i = 1;
    while (i < cut && w[i] >= p.min_p * w[0]) ++i;
    cut = i;
  }
  double total = 0;
  for (size_t i = 0; i < cut; ++i) total += w[i];
  std::vector<double> probs(n, 0.0);
  for (size_t i = 0; i < cut; ++i) probs[order[i]] = w[i] / total;
  return probs;
}

cuda::SampleRowParams Device(const Params& p, uint64_t seed, uint64_t step) {
  return {static_cast<float>(p.temperature), p.top_k, static_cast<float>(p.top_p),
          static_cast<float>(p.min_p), seed, step};
}

// Runs LaunchSample on `rows` (each of width `vocab`) with per-row parameters.
std::vector<int> Sample(const std::vector<float>& rows, int vocab,
                        const std::vector<cuda::SampleRowParams>& params,
                        std::vector<float>* logprobs = nullptr) {
  DeviceArray<float> d_logits;
  d_logits.Upload(rows);
  DeviceArray<cuda::SampleRowParams> d_params;
  d_params.Upload(params);
  DeviceArray<int> d_ids(params.size());
  DeviceArray<float> d_lp(params.size());
  d_ids.Poison();
  d_lp.Poison();
  const Status st = cuda::LaunchSample(d_logits.get(), static_cast<int>(params.size()), vocab,
                                       d_params.get(), d_ids.get(),
                                       logprobs ? d_lp.get() : nullptr, nullptr);
  EXPECT_TRUE(st.ok()) << st.error().message;
  if (logprobs) *logprobs = d_lp.Download();
  return d_ids.Download();
}

// A row of `n` logits rounded to multiples of 0.25 in [-3, 3]: about 25 distinct values, so ties
// at every cut.
std::vector<float> TiedRow(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> q(-12, 12);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& x : l) x = 0.25f * static_cast<float>(q(rng));
  return l;
}

// A top_k whose k-th value continues past k (the cut splits a tie group).
int TopKInsideTies(const std::vector<float>& l, int at_least) {
  const std::vector<int> order = Order(l);
  for (size_t k = static_cast<size_t>(at_least); k + 1 < order.size(); ++k) {
    if (l[order[k - 1]] == l[order[k]] && (k < 2 || l[order[k - 2]] == l[order[k - 1]])) {
      return static_cast<int>(k);
    }
  }
  ADD_FAILURE() << "no tie group to cut";
  return at_least;
}

// A top_p that ends inside a tie group of >= 3 (keeping 2 of it) for this T and top_k.
double TopPInsideTies(const std::vector<float>& l, const Params& base) {
  Params p = base;
  p.top_p = 1.0;
  p.min_p = 0.0;
  const std::vector<double> probs = TruncatedProbs(l, p);
  const std::vector<int> order = Order(l);
  double cum = 0;
  for (size_t i = 0; i + 2 < order.size(); ++i) {
    const double q = probs[order[i]];
    if (i > 0 && q > 0.02 && probs[order[i + 1]] == q && probs[order[i + 2]] == q &&
        l[order[i - 1]] != l[order[i]]) {
      return cum + 1.5 * q;
    }
    cum += q;
  }
  ADD_FAILURE() << "no tie group of 3 for top_p";
  return 0.5;
}

TEST(GpuSampling, DrawsFollowTheTruncatedSoftmax) {
  GS_REQUIRE_GPU();
  const int n = 64;
  const std::vector<float> row = TiedRow(n, 7);
  std::vector<Params> cases = {
      {1.0, 0, 1.0, 0.0},   // every filter off: plain softmax
      {0.7, 0, 1.0, 0.0},
      {1.0, n, 1.0, 0.0},   // top_k = vocab is off too
      {1.3, TopKInsideTies(row, 5), 1.0, 0.0},
      {1.0, 0, 1.0, 0.3},
      {0.8, 0, 0.0, 0.0},   // top_p filled in below
      {1.2, 20, 0.0, 0.0},  // top_p after top-k, filled in below
      {0.9, 20, 0.9, 0.05},
  };
  cases[5].top_p = TopPInsideTies(row, cases[5]);
  cases[6].top_p = TopPInsideTies(row, cases[6]);
  const int draws = 200000;
  std::vector<float> rows;
  rows.reserve(static_cast<size_t>(draws) * n);
  for (int d = 0; d < draws; ++d) rows.insert(rows.end(), row.begin(), row.end());
  for (const Params& p : cases) {
    SCOPED_TRACE(Describe(p));
    const std::vector<double> want = TruncatedProbs(row, p);
    std::vector<cuda::SampleRowParams> params;
    for (int d = 0; d < draws; ++d) params.push_back(Device(p, 1234, static_cast<uint64_t>(d)));
    const std::vector<int> ids = Sample(rows, n, params);
    std::vector<double> count(n, 0.0);
    int outside = 0;
    for (int id : ids) {
      ASSERT_TRUE(id >= 0 && id < n) << id;
      count[static_cast<size_t>(id)] += 1;
      outside += want[static_cast<size_t>(id)] == 0.0;
    }
    EXPECT_EQ(outside, 0) << "draws outside the kept set";
    double chi2 = 0, tv = 0;
    int kept = 0;
    for (int i = 0; i < n; ++i) {
      const double e = want[static_cast<size_t>(i)] * draws;
      tv += std::fabs(count[static_cast<size_t>(i)] / draws - want[static_cast<size_t>(i)]) / 2;
      if (e > 0) {
        ++kept;
        chi2 += (count[static_cast<size_t>(i)] - e) * (count[static_cast<size_t>(i)] - e) / e;
      }
    }
    // Under the exact distribution chi2 ~ χ²(kept − 1): mean df, sd √(2 df); 6 sd is far out.
    const double df = std::max(1, kept - 1);
    EXPECT_LT(chi2, df + 6 * std::sqrt(2 * df) + 10) << "kept " << kept;
    EXPECT_LT(tv, 0.02);
    std::printf("%-55s kept %2d  chi2 %7.1f (df %2.0f)  TV %.4f\n", Describe(p).c_str(), kept,
                chi2, df, tv);
  }
}

TEST(GpuSampling, GreedyIsArgmaxWithLowestIdOnTies) {
  GS_REQUIRE_GPU();
  const int n = 262144;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> rows;
  std::vector<cuda::SampleRowParams> params;
  std::vector<int> want;
  for (int r = 0; r < 6; ++r) {
    std::vector<float> l(n);
    for (float& x : l) x = dist(rng);
    if (r % 2 == 1) {  // the maximum three times; the lowest id wins
      const float top = *std::max_element(l.begin(), l.end()) + 1.0f;
      l[200000] = l[77] = l[150000] = top;
    }
    want.push_back(static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin()));
    rows.insert(rows.end(), l.begin(), l.end());
    Params p;
    p.temperature = r < 3 ? 0.0 : 1.0;
    p.top_k = r < 3 ? 0 : 1;  // top_k 1 is greedy whatever the temperature
    params.push_back(Device(p, 99, static_cast<uint64_t>(r)));
  }
  EXPECT_EQ(Sample(rows, n, params), want);
}

// Full vocabulary width: every draw inside the kept set computed on the host. Ties at the top
// (five equal maxima) make the index rule observable: top_k 3 and a top_p that takes three of the
// five must keep the three lowest ids only.
TEST(GpuSampling, FullWidthDrawsStayInTheKeptSet) {
  GS_REQUIRE_GPU();
  const int n = 262144;
  std::mt19937_64 rng(11);
  std::normal_distribution<float> dist(0.0f, 2.5f);
  std::vector<float> l(n);
  for (float& x : l) x = dist(rng);
  std::vector<float> tied = l;
  const float top = *std::max_element(l.begin(), l.end()) + 8.0f;  // the five hold ~all the mass
  for (int id : {250001, 17, 99999, 4, 131072}) tied[static_cast<size_t>(id)] = top;
  struct Case {
    const std::vector<float>* row;
    Params p;
    bool exact;  // no float near-boundary in the cut (pure ties or top-k)
  };
  const std::vector<Case> cases = {
      {&tied, {1.0, 3, 1.0, 0.0}, true},    {&tied, {1.0, 0, 0.5, 0.0}, true},
      {&tied, {2.0, 4, 0.7, 0.0}, true},    {&l, {1.0, 64, 1.0, 0.0}, true},
      {&l, {1.0, 64, 0.95, 0.0}, false},    {&l, {0.7, 0, 0.9, 0.0}, false},
      {&l, {1.0, 0, 1.0, 0.05}, false},     {&l, {1.5, 1000, 0.8, 0.02}, false},
      {&l, {1.0, 0, 1.0, 0.0}, true},
  };
  const int draws = 64;
  for (const Case& c : cases) {
    SCOPED_TRACE(Describe(c.p));
    const std::vector<double> want = TruncatedProbs(*c.row, c.p);
    // Near-boundary tolerance where the cut depends on fp32 (GPU) vs double (here) sums.
    Params loose = c.p;
    if (!c.exact) {
      loose.top_p = std::min(1.0, c.p.top_p + 1e-4);
      loose.min_p = c.p.min_p * (1 - 1e-4);
    }
    const std::vector<double> allowed = TruncatedProbs(*c.row, loose);
    std::vector<float> rows;
    std::vector<cuda::SampleRowParams> params;
    for (int d = 0; d < draws; ++d) {
      rows.insert(rows.end(), c.row->begin(), c.row->end());
      params.push_back(Device(c.p, 5, static_cast<uint64_t>(1000 + d)));
    }
    std::vector<float> lps;
    const std::vector<int> ids = Sample(rows, n, params, &lps);
    int distinct = 0;
    std::vector<char> seen(n, 0);
    for (int d = 0; d < draws; ++d) {
      const int id = ids[static_cast<size_t>(d)];
      ASSERT_TRUE(id >= 0 && id < n) << id;
      EXPECT_GT(allowed[static_cast<size_t>(id)], 0.0) << "draw " << d << " id " << id
                                                       << " logit " << (*c.row)[id];
      distinct += !seen[static_cast<size_t>(id)];
      seen[static_cast<size_t>(id)] = 1;
      const float want_lp = ComputeLogprobs(*c.row, id, 0).chosen;
      EXPECT_NEAR(lps[static_cast<size_t>(d)], want_lp, 2e-4 * std::max(1.0f, std::fabs(want_lp)));
    }
    int kept = 0;
    for (double q : want) kept += q > 0;
    if (kept > 1) {
      EXPECT_GT(distinct, 1) << "a sampling row always drew the same id";
    }
  }
}

TEST(GpuSampling, SameSeedAndStepGiveTheSameIdAnywhereInAnyBatch) {
  GS_REQUIRE_GPU();
  const int n = 5000;
  const int rows_n = 9;
  std::vector<std::vector<float>> rows;
  std::vector<cuda::SampleRowParams> params;
  std::mt19937_64 rng(21);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int r = 0; r < rows_n; ++r) {
    std::vector<float> l(n);
    for (float& x : l) x = dist(rng);
    rows.push_back(l);
    Params p{0.6 + 0.1 * r, r % 3 == 0 ? 0 : 50 * r, r % 2 ? 0.9 : 1.0, r % 4 == 1 ? 0.01 : 0.0};
    params.push_back(Device(p, 1000 + static_cast<uint64_t>(r % 3), 7 + static_cast<uint64_t>(r)));
  }
  auto run = [&](const std::vector<int>& pick) {
    std::vector<float> flat;
    std::vector<cuda::SampleRowParams> ps;
    for (int r : pick) {
      flat.insert(flat.end(), rows[static_cast<size_t>(r)].begin(), rows[static_cast<size_t>(r)].end());
      ps.push_back(params[static_cast<size_t>(r)]);
    }
    return Sample(flat, n, ps);
  };
  std::vector<int> all(rows_n);
  std::iota(all.begin(), all.end(), 0);
  const std::vector<int> base = run(all);
  EXPECT_EQ(run(all), base) << "not repeatable";
  const std::vector<int> picks = {8, 3, 3, 0, 5};
  const std::vector<int> subset = run(picks);
  for (size_t i = 0; i < picks.size(); ++i) {
    EXPECT_EQ(subset[i], base[static_cast<size_t>(picks[i])]) << "row " << picks[i];
  }
  // A different step or seed changes the draw of a flat row at least sometimes.
  std::vector<cuda::SampleRowParams> ps;
  std::vector<float> flat;
  for (int s = 0; s < 16; ++s) {
    flat.insert(flat.end(), rows[2].begin(), rows[2].end());
    cuda::SampleRowParams p = params[2];
    p.step += static_cast<uint64_t>(s);
    ps.push_back(p);
  }
  const std::vector<int> steps = Sample(flat, n, ps);
  EXPECT_GT(std::set<int>(steps.begin(), steps.end()).size(), 4u);
}

// The runner path on the demo model: ForwardSample's logits equal Forward's, greedy rows equal
// ForwardGreedy, sampled rows lie in the kept set, and decode steps through CUDA graphs draw the
// same ids as the eager runner.
TEST(GpuSampling, RunnerForwardSampleEagerAndGraph) {
  GS_REQUIRE_GPU();
  const std::string dir = ::testing::TempDir() + "/gs_sampling_demo_model";
  DemoModelOptions o;
  o.output_dir = dir;
  o.overwrite = true;
  ASSERT_TRUE(WriteDemoModel(o).ok());
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, dir);
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  KvCacheSpec spec;
  spec.max_sequences = 3;
  spec.block_size = 16;
  spec.num_global_blocks = 3 * 8;
  CudaRunnerOptions eager_opts;
  eager_opts.enforce_eager = true;
  auto eager = CreateCudaRunner(*config, *weights, spec, eager_opts);
  auto graph = CreateCudaRunner(*config, *weights, spec);
  ASSERT_TRUE(eager.ok()) << eager.error().message;
  ASSERT_TRUE(graph.ok()) << graph.error().message;
  const int vocab = config->vocab_size;
  const auto seq = gputest::SlotSequence;
  Batch pre;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> tok(3, vocab - 1);
  for (int s = 0; s < 3; ++s) {
    const int len = 6 + 4 * s;
    pre.sequences.push_back(seq(s, pre.num_tokens(), len, 0));
    for (int i = 0; i < len; ++i) pre.token_ids.push_back(tok(rng));
    pre.logits_indices.push_back(pre.num_tokens() - 1);
  }
  std::vector<GpuSamplingParams> per_row(3);
  per_row[1].temperature = 1.0f;
  per_row[1].top_k = 5;
  per_row[1].seed = 42;
  per_row[2].temperature = 0.8f;
  per_row[2].top_p = 0.9f;
  per_row[2].seed = 43;
  std::vector<float> logits, sampled_logits, lps;
  std::vector<int32_t> greedy, ids;
  auto f = (*eager)->Forward(pre, &logits);
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE((*eager)->ForwardGreedy(pre, &greedy).ok());
  auto st = (*eager)->ForwardSample(pre, per_row, &ids, &lps, &sampled_logits);
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_EQ(sampled_logits.size(), logits.size());
  EXPECT_EQ(0, std::memcmp(logits.data(), sampled_logits.data(), logits.size() * sizeof(float)));
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], greedy[0]);
  for (size_t r = 0; r < 3; ++r) {
    const std::vector<float> row(logits.begin() + static_cast<std::ptrdiff_t>(r * vocab),
                                 logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * vocab));
    Params p{per_row[r].temperature, per_row[r].top_k, per_row[r].top_p, per_row[r].min_p};
    if (r == 0) continue;
    p.top_p = std::min(1.0, p.top_p + 1e-4);
    EXPECT_GT(TruncatedProbs(row, p)[static_cast<size_t>(ids[r])], 0.0) << "row " << r;
    EXPECT_NEAR(lps[r], ComputeLogprobs(row, ids[r], 0).chosen, 1e-3);
  }
  // Decode steps: graph (bucket 4: warm-up, capture, replays) vs eager, same ids every step.
  std::vector<int32_t> ids_g;
  ASSERT_TRUE((*graph)->ForwardSample(pre, per_row, &ids_g, nullptr, nullptr).ok());
  ASSERT_EQ(ids_g, ids);
  std::vector<int> pos;
  for (const auto& s : pre.sequences) pos.push_back(s.num_tokens);
  for (int step = 0; step < 5; ++step) {
    Batch b;
    for (int s = 0; s < 3; ++s) {
      b.sequences.push_back(seq(s, s, 1, pos[static_cast<size_t>(s)]++));
      b.token_ids.push_back(ids[static_cast<size_t>(s)]);
      b.logits_indices.push_back(s);
    }
    for (auto& g : per_row) g.step = static_cast<uint64_t>(step + 1);
    std::vector<int32_t> e_ids, g_ids;
    auto se = (*eager)->ForwardSample(b, per_row, &e_ids, nullptr, nullptr);
    auto sg = (*graph)->ForwardSample(b, per_row, &g_ids, nullptr, nullptr);
    ASSERT_TRUE(se.ok()) << se.error().message;
    ASSERT_TRUE(sg.ok()) << sg.error().message;
    EXPECT_EQ(e_ids, g_ids) << "step " << step;
    ids = g_ids;
  }
  EXPECT_GE((*graph)->graph_launches(), 2);
  std::vector<GpuSamplingParams> wrong(2);
  EXPECT_FALSE((*eager)->ForwardSample(pre, wrong, &ids, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace gs
