// Which bf16 rounding points of the CUDA runner explain its gap to the golden criterion
// (KL(reference ‖ ours) < 1e-3 per position, argmax agreement ≥ 99%, DESIGN §4)?
//
// The fp32 CPU runner rounds activations to bf16 at chosen points (CpuRunnerOptions::
// bf16_round_points, cpu::Bf16Point) and is compared with the transformers fp32 logits of every
// golden config × format × prompt: no rounding, all points, each point alone, all but one, and
// a few candidate sets that keep some points in fp32 or as hi + lo bf16 pairs. Compressed-
// tensors checkpoints run, as on the GPU, with their 4-bit attention projections dequantized to
// bf16 against the reference's `ct_converted_variant`. A router diagnosis then shows, for the
// worst position, where the rounded run first picks other experts than the fp32 run (which
// matches transformers to ~3e-6) and how small the router margin there was, and reruns the
// rounding with the routing forced to the fp32 selection. Results: docs/golden-precision.md.
//
// Asserted on the default set (tests/data/golden): the no-rounding run meets the criterion
// everywhere (the oracle is transformers), and all points together reproduce the GPU's failure
// (worst KL ≥ 1e-2 somewhere: the H100 measured 0.5), so the table is about the effect the CUDA
// runner shows. On the bf16-conditioned set (tests/data/golden_bf16, skipped loudly while absent):
// the same table, and all points together MEET the criterion in every case — the CPU-side proof
// that a bf16 engine can pass it there (tests/gpu/golden_cuda_test then asserts it on the GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <tuple>

#include "golden/golden_bf16_util.h"
#include "golden/golden_util.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/bf16_rounding.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "runtime/sampling.h"
#include "util/npy.h"
#include "util/numeric_formats.h"
#include "util/str.h"

namespace gs {
namespace {

using golden::kAgreeLimit;
using golden::kKlLimit;
using golden::KlDivergence;

// One golden model in one format, its prompts and the reference logits of each.
struct Model {
  std::string name, format;
  ModelConfig config;
  Gemma4Weights weights;
  std::deque<std::vector<uint16_t>> owned;  // bf16 attention of ct checkpoints
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> expected;
};

// Every format of every config in `dirs` (one golden set).
std::vector<std::unique_ptr<Model>> LoadModels(const std::vector<std::string>& dirs) {
  std::vector<std::unique_ptr<Model>> out;
  for (const std::string& dir : dirs) {
    const auto ref = golden::ReadReference(dir);
    for (const char* format : {"bf16", "modelopt", "ct"}) {
      if (!ref["formats"].contains(format)) continue;
      const bool ct = std::string(format) == "ct";
      if (ct && !ref.contains("ct_converted_variant")) continue;
      auto m = std::make_unique<Model>();
      m->name = std::filesystem::path(dir).filename().string();
      m->format = format;
      auto config = LoadModelConfig(dir + "/" + format);
      EXPECT_TRUE(config.ok()) << config.error().message;
      if (!config.ok()) continue;
      auto weights = LoadGemma4Weights(*config, dir + "/" + format);
      EXPECT_TRUE(weights.ok()) << weights.error().message;
      if (!weights.ok()) continue;
      m->config = *config;
      m->weights = std::move(*weights);
      if (ct) golden::AttentionToBf16(m->weights, &m->owned);
      const auto& files =
          ct ? ref["ct_converted_variant"]["logits"] : ref["formats"][format]["logits"];
      for (size_t p = 0; p < ref["prompts"].size(); ++p) {
        m->prompts.push_back(ref["prompts"][p].get<std::vector<int32_t>>());
        auto logits = ReadNpyFloat32(dir + "/" + files[p].get<std::string>());
        EXPECT_TRUE(logits.ok()) << logits.error().message;
        m->expected.push_back(logits.ok() ? logits->data : std::vector<float>{});
      }
      out.push_back(std::move(m));
    }
  }
  return out;
}

// Per prompt: KL at every position, argmax agreement.
struct Score {
  std::vector<double> kl;
  double agree = 0;
  double mismatch_gap = 0;  // largest reference top1 − top2 logit gap where the argmax differs
  double worst() const { return *std::max_element(kl.begin(), kl.end()); }
  size_t worst_at() const {
    return static_cast<size_t>(std::max_element(kl.begin(), kl.end()) - kl.begin());
  }
  double median() const {
    std::vector<double> s = kl;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
  size_t over() const {
    return static_cast<size_t>(
        std::count_if(kl.begin(), kl.end(), [](double k) { return k >= kKlLimit; }));
  }
};

std::vector<float> RunPrompt(const Model& m, size_t p, const CpuRunnerOptions& options) {
  CpuRunner runner(m.config, m.weights, KvSpecForSingleSequence(1024, 4), options);
  GenerateOptions g;
  g.max_tokens = 0;
  g.prompt_logits = true;
  auto got = Generate(runner, m.prompts[p], g);
  EXPECT_TRUE(got.ok()) << got.error().message;
  return got.ok() ? got->prompt_logits : std::vector<float>{};
}

Score ScoreLogits(const Model& m, size_t p, const std::vector<float>& logits) {
  const size_t vocab = static_cast<size_t>(m.config.vocab_size), n = m.prompts[p].size();
  Score s;
  if (logits.size() != n * vocab || m.expected[p].size() != n * vocab) {
    ADD_FAILURE() << m.name << " " << m.format << " p" << p << ": logits of the wrong size";
    s.kl.assign(n, 1e30);
    return s;
  }
  size_t same = 0;
  for (size_t t = 0; t < n; ++t) {
    const float* r = &m.expected[p][t * vocab];
    const float* o = &logits[t * vocab];
    const double kl = KlDivergence(r, o, vocab);
    s.kl.push_back(kl == kl ? kl : 1e30);
    const int32_t top = Argmax({r, vocab});
    if (top == Argmax({o, vocab})) {
      ++same;
      continue;
    }
    float second = -INFINITY;
    for (size_t i = 0; i < vocab; ++i) {
      if (static_cast<int32_t>(i) != top) second = std::max(second, r[i]);
    }
    s.mismatch_gap = std::max(s.mismatch_gap, static_cast<double>(r[top]) - second);
  }
  s.agree = static_cast<double>(same) / static_cast<double>(n);
  return s;
}

CpuRunnerOptions Options(uint32_t single, uint32_t pair = 0) {
  CpuRunnerOptions o;
  o.num_threads = 2;
  o.bf16_round_points = single;
  o.bf16_pair_points = pair;
  return o;
}

struct Variant {
  std::string label;
  uint32_t single = 0, pair = 0;
};

std::vector<Variant> Variants() {
  using namespace cpu;
  std::vector<Variant> v = {{"none", 0, 0}, {"all", kAllBf16Points, 0}};
  for (int i = 0; i < kNumBf16Points; ++i) {
    v.push_back({std::string("only ") + Bf16PointName(1u << i), 1u << i, 0});
  }
  for (int i = 0; i < kNumBf16Points; ++i) {
    v.push_back({std::string("all but ") + Bf16PointName(1u << i), kAllBf16Points & ~(1u << i), 0});
  }
  // Candidate sets for the GPU: keep some points in fp32 ("all but A+B"), or as hi + lo pairs.
  const uint32_t attn_in = kBf16QkvInput | kBf16AttnOutput;
  const uint32_t qkv = kBf16Q | kBf16K | kBf16V;
  const uint32_t ffn_in = kBf16DenseInput | kBf16ExpertInput;
  const uint32_t glu = kBf16DenseGlu | kBf16ExpertGlu;
  v.push_back({"all but qkv_in+o_in", kAllBf16Points & ~attn_in, 0});
  v.push_back({"all but q+k+v", kAllBf16Points & ~qkv, 0});
  v.push_back({"all but dense_in+expert_in", kAllBf16Points & ~ffn_in, 0});
  v.push_back({"all but dense_glu+expert_glu", kAllBf16Points & ~glu, 0});
  v.push_back({"all but the ffn (in+glu)", kAllBf16Points & ~(ffn_in | glu), 0});
  v.push_back({"all but attention (in,qkv,o)", kAllBf16Points & ~(attn_in | qkv), 0});
  v.push_back({"all as hi+lo pairs", 0, kAllBf16Points});
  v.push_back({"q+k+v bf16, rest hi+lo", qkv, kAllBf16Points & ~qkv});
  v.push_back({"kv bf16, rest hi+lo", kBf16K | kBf16V, kAllBf16Points & ~(kBf16K | kBf16V)});
  return v;
}

// Per layer: router logits [tokens, experts] and selection [tokens, k] of one forward.
struct RouterTrace {
  std::map<int, std::vector<float>> logits;
  std::map<int, std::vector<int>> experts;
};

CpuRunnerOptions Tracing(CpuRunnerOptions o, RouterTrace* trace, const RouterTrace* force) {
  o.routing_hook = [trace, force](int layer, const std::vector<float>& logits,
                                  std::vector<int>* ex) {
    if (force != nullptr) *ex = force->experts.at(layer);
    if (trace != nullptr) {
      trace->logits[layer] = logits;
      trace->experts[layer] = *ex;
    }
  };
  return o;
}

// Aggregate of one variant over every model × prompt.
struct Row {
  double worst = 0, min_agree = 1, mismatch_gap = 0;
  std::string worst_case;
  std::vector<double> medians;
  size_t over = 0, positions = 0, failing = 0, cases = 0;
};

void Add(Row& row, const Score& s, const std::string& label) {
  if (s.worst() > row.worst) {
    row.worst = s.worst();
    row.worst_case = StrCat(label, " @", s.worst_at());
  }
  row.min_agree = std::min(row.min_agree, s.agree);
  row.mismatch_gap = std::max(row.mismatch_gap, s.mismatch_gap);
  row.medians.push_back(s.median());
  row.over += s.over();
  row.positions += s.kl.size();
  row.failing += s.worst() >= kKlLimit || s.agree < kAgreeLimit;
  ++row.cases;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string CaseLabel(const Model& m, size_t p) {
  return StrCat(m.name, "/", m.format, "/p", p);
}

void PrintTable(const std::vector<Variant>& variants, const std::vector<Row>& rows,
                const std::vector<Row>& forced) {
  std::printf("\n| rounded to bf16 | worst KL (case @pos) | median of medians | positions >= 1e-3 "
              "| cases failing | min argmax agreement | largest ref top1-top2 gap at an argmax "
              "miss | forced routing: worst KL | median | cases failing |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t v = 0; v < variants.size(); ++v) {
    const Row& r = rows[v];
    const Row& f = forced[v];
    std::printf("| %s | %.2e (%s) | %.1e | %zu/%zu | %zu/%zu | %.3f | %.3f | %.2e | %.1e "
                "| %zu/%zu |\n",
                variants[v].label.c_str(), r.worst, r.worst_case.c_str(), Median(r.medians), r.over,
                r.positions, r.failing, r.cases, r.min_agree, r.mismatch_gap, f.worst,
                Median(f.medians), f.failing, f.cases);
  }
}

// Every variant twice: as is, and with each MoE layer's selection forced to the fp32 run's (the
// weights still come from the rounded run's router logits), which removes router flips and
// leaves the continuous part of the error. Prints one CASE line per (case, variant) and the
// table; returns the rows (in Variants() order; [0] is "none", [1] is "all").
std::vector<Row> AblationTable(const std::vector<std::unique_ptr<Model>>& models) {
  const std::vector<Variant> variants = Variants();
  std::vector<Row> rows(variants.size()), forced(variants.size());
  std::printf("\nPer case (worst KL @position, median KL, positions >= 1e-3, argmax agreement; "
              "then the same with the routing forced to fp32's):\n");
  for (const auto& m : models) {
    for (size_t p = 0; p < m->prompts.size(); ++p) {
      const std::string label = CaseLabel(*m, p);
      RouterTrace ref;
      RunPrompt(*m, p, Tracing(Options(0), &ref, nullptr));
      for (size_t v = 0; v < variants.size(); ++v) {
        const CpuRunnerOptions o = Options(variants[v].single, variants[v].pair);
        const Score s = ScoreLogits(*m, p, RunPrompt(*m, p, o));
        const Score f = ScoreLogits(*m, p, RunPrompt(*m, p, Tracing(o, nullptr, &ref)));
        Add(rows[v], s, label);
        Add(forced[v], f, label);
        std::printf("CASE %-30s %-30s worst %.2e @%2zu  median %.2e  over %2zu/%2zu  agree %.3f"
                    " | forced: worst %.2e  median %.2e  agree %.3f\n",
                    label.c_str(), variants[v].label.c_str(), s.worst(), s.worst_at(), s.median(),
                    s.over(), s.kl.size(), s.agree, f.worst(), f.median(), f.agree);
        if (v == 0) {
          EXPECT_LT(s.worst(), kKlLimit) << label << ": the fp32 path misses the golden criterion";
          EXPECT_GE(s.agree, kAgreeLimit) << label;
        }
      }
    }
  }
  PrintTable(variants, rows, forced);
  return rows;
}

TEST(GoldenBf16Ablation, WhichRoundingPointsExplainTheGap) {
  const auto models = LoadModels(golden::GoldenConfigs());
  ASSERT_GE(models.size(), 3u) << "no golden data in " << golden::DefaultGoldenRoot();
  const std::vector<Row> rows = AblationTable(models);
  EXPECT_GE(rows[1].worst, 1e-2) << "all points together should reproduce the GPU's failure";
}

// The same table on the bf16-conditioned set (what each point costs where bf16 can pass).
TEST(GoldenBf16Ablation, ConditionedSetTable) {
  const auto configs = golden::ConditionedGoldenConfigs();
  if (configs.empty()) GTEST_SKIP() << golden::NoConditionedDataMessage();
  const auto models = LoadModels(configs);
  ASSERT_GE(models.size(), 3u) << "too few models in " << golden::ConditionedGoldenRoot();
  AblationTable(models);
}

// The go / no-go for a bf16 engine on the conditioned set: with all ten rounding points of the
// CUDA runner emulated, every (config, format, prompt) meets the criterion (KL < 1e-3 at every
// position, argmax agreement >= 99%), as the fp32 path does.
TEST(GoldenBf16Ablation, ConditionedSetMeetsCriterionWithAllPointsInBf16) {
  const auto configs = golden::ConditionedGoldenConfigs();
  if (configs.empty()) GTEST_SKIP() << golden::NoConditionedDataMessage();
  for (const auto& dir : configs) {
    EXPECT_TRUE(golden::IsConditioned(golden::ReadReference(dir)))
        << dir << "/reference.json is not --profile bf16 data";
  }
  const auto models = LoadModels(configs);
  ASSERT_GE(models.size(), 3u) << "too few models in " << golden::ConditionedGoldenRoot();
  size_t cases = 0;
  for (const auto& m : models) {
    for (size_t p = 0; p < m->prompts.size(); ++p) {
      const std::string label = CaseLabel(*m, p);
      const Score fp32 = ScoreLogits(*m, p, RunPrompt(*m, p, Options(0)));
      const Score bf16 = ScoreLogits(*m, p, RunPrompt(*m, p, Options(cpu::kAllBf16Points)));
      std::printf("CONDITIONED %-32s fp32: worst %.2e | all points bf16: worst %.2e @%2zu  "
                  "median %.2e  over %zu/%zu  agree %.3f\n",
                  label.c_str(), fp32.worst(), bf16.worst(), bf16.worst_at(), bf16.median(),
                  bf16.over(), bf16.kl.size(), bf16.agree);
      EXPECT_LT(fp32.worst(), kKlLimit) << label << ": the fp32 path misses the criterion";
      EXPECT_GE(fp32.agree, kAgreeLimit) << label;
      EXPECT_LT(bf16.worst(), kKlLimit)
          << label << ": all-points bf16 emulation, position " << bf16.worst_at();
      EXPECT_GE(bf16.agree, kAgreeLimit) << label << ": all-points bf16 emulation";
      ++cases;
    }
  }
  std::printf("CONDITIONED %zu cases checked\n", cases);
}

// Greedy search for the cheapest fix: starting from every point in bf16, move to a hi + lo pair
// the point that most reduces (cases failing, positions >= 1e-3, sum of worst KL), until every
// case passes or all points are pairs. Prints the path.
TEST(GoldenBf16Ablation, GreedyHiLoSearch) {
  const auto models = LoadModels(golden::GoldenConfigs());
  ASSERT_GE(models.size(), 3u) << "no golden data in " << golden::DefaultGoldenRoot();
  struct Cost {
    size_t failing = 0, over = 0;
    double sum_worst = 0, worst = 0;
    std::vector<double> medians;
    bool operator<(const Cost& o) const {
      return std::tie(failing, over, sum_worst) < std::tie(o.failing, o.over, o.sum_worst);
    }
  };
  const auto evaluate = [&](uint32_t pair) {
    Cost c;
    for (const auto& m : models) {
      for (size_t p = 0; p < m->prompts.size(); ++p) {
        const Score s = ScoreLogits(*m, p, RunPrompt(*m, p, Options(cpu::kAllBf16Points, pair)));
        c.failing += s.worst() >= kKlLimit || s.agree < kAgreeLimit;
        c.over += s.over();
        c.sum_worst += s.worst();
        c.worst = std::max(c.worst, s.worst());
        c.medians.push_back(s.median());
      }
    }
    return c;
  };
  std::printf("\n| step | points as hi+lo pairs (rest bf16) | cases failing | positions >= 1e-3 | "
              "worst KL | median of medians |\n|---|---|---|---|---|---|\n");
  uint32_t pair = 0;
  Cost cost = evaluate(pair);
  for (int step = 0;; ++step) {
    std::printf("| %d | %s | %zu | %zu | %.2e | %.1e |\n", step, cpu::Bf16PointsName(pair).c_str(),
                cost.failing, cost.over, cost.worst, Median(cost.medians));
    if (cost.failing == 0 || pair == cpu::kAllBf16Points) break;
    uint32_t best_pair = 0;
    Cost best;
    for (int i = 0; i < cpu::kNumBf16Points; ++i) {
      if (pair & (1u << i)) continue;
      const Cost c = evaluate(pair | (1u << i));
      if (best_pair == 0 || c < best) best = c, best_pair = pair | (1u << i);
    }
    pair = best_pair;
    cost = best;
  }
}

std::vector<int> Selected(const std::vector<int>& experts, size_t t, int k) {
  std::vector<int> s(experts.begin() + static_cast<ptrdiff_t>(t) * k,
                     experts.begin() + static_cast<ptrdiff_t>(t + 1) * k);
  std::sort(s.begin(), s.end());
  return s;
}

// Gap between the k-th and (k+1)-th largest router logit of token t.
double Margin(const std::vector<float>& logits, size_t t, int num_experts, int k) {
  std::vector<float> row(logits.begin() + static_cast<ptrdiff_t>(t) * num_experts,
                         logits.begin() + static_cast<ptrdiff_t>(t + 1) * num_experts);
  std::sort(row.begin(), row.end(), std::greater<float>());
  return static_cast<double>(row[static_cast<size_t>(k - 1)]) - row[static_cast<size_t>(k)];
}

// Under the reference distribution p of one position: the standard deviation of the logits
// (how peaked p is) and of the logit error Δ = ours − ref (KL ≈ ½ Var_p(Δ) for small Δ).
std::pair<double, double> SpreadUnderP(const float* ref, const float* ours, size_t n) {
  double mr = -INFINITY;
  for (size_t i = 0; i < n; ++i) mr = std::max(mr, static_cast<double>(ref[i]));
  double z = 0, m1 = 0, m2 = 0, d1 = 0, d2 = 0;
  for (size_t i = 0; i < n; ++i) z += std::exp(ref[i] - mr);
  for (size_t i = 0; i < n; ++i) {
    const double p = std::exp(ref[i] - mr) / z, d = static_cast<double>(ours[i]) - ref[i];
    m1 += p * ref[i];
    m2 += p * ref[i] * ref[i];
    d1 += p * d;
    d2 += p * d * d;
  }
  return {std::sqrt(std::max(0.0, m2 - m1 * m1)), std::sqrt(std::max(0.0, d2 - d1 * d1))};
}

// For the all-points run and the best candidate set: where the worst position's routing first
// departs from the fp32 run (the earliest layer at which any position up to it picks other
// experts: attention carries a flip to every later position), the fp32 router margin there, the
// number of flipped (layer, token) decisions, and the KL with the routing forced to fp32's.
TEST(GoldenBf16Ablation, RouterFlipsAtTheWorstPositions) {
  const auto models = LoadModels(golden::GoldenConfigs());
  ASSERT_GE(models.size(), 3u) << "no golden data in " << golden::DefaultGoldenRoot();
  const std::vector<Variant> probes = {
      {"all", cpu::kAllBf16Points, 0},
      {"all as hi+lo pairs", 0, cpu::kAllBf16Points},
  };
  std::printf("\n| rounding | case | worst KL @pos | first flip (layer, token) | fp32 margin there "
              "| |Δ logit| there | flips (all tokens) | smallest fp32 margin | worst KL, routing "
              "forced to fp32's | median, forced | forced: median σ_p(ref logits) | median σ_p(Δ) "
              "|\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Variant& probe : probes) {
    for (const auto& m : models) {
      const int k = m->config.top_k_experts, e = m->config.num_experts;
      for (size_t p = 0; p < m->prompts.size(); ++p) {
        RouterTrace ref, got;
        RunPrompt(*m, p, Tracing(Options(0), &ref, nullptr));
        const CpuRunnerOptions o = Options(probe.single, probe.pair);
        const Score s = ScoreLogits(*m, p, RunPrompt(*m, p, Tracing(o, &got, nullptr)));
        const std::vector<float> forced_logits = RunPrompt(*m, p, Tracing(o, nullptr, &ref));
        const Score forced = ScoreLogits(*m, p, forced_logits);
        std::vector<double> sigma_ref, sigma_delta;
        const size_t vocab = static_cast<size_t>(m->config.vocab_size);
        const bool sized = forced_logits.size() == m->expected[p].size();
        for (size_t t = 0; sized && t < m->prompts[p].size(); ++t) {
          const auto [sr, sd] =
              SpreadUnderP(&m->expected[p][t * vocab], &forced_logits[t * vocab], vocab);
          sigma_ref.push_back(sr);
          sigma_delta.push_back(sd);
        }
        const size_t worst_at = s.worst_at();
        int flip_layer = -1;
        size_t flip_token = 0, flips = 0;
        double min_margin = INFINITY;
        for (const auto& [layer, ex] : ref.experts) {
          for (size_t t = 0; t < m->prompts[p].size(); ++t) {
            min_margin = std::min(min_margin, Margin(ref.logits[layer], t, e, k));
            if (Selected(ex, t, k) == Selected(got.experts[layer], t, k)) continue;
            ++flips;
            if (flip_layer < 0 && t <= worst_at) flip_layer = layer, flip_token = t;
          }
        }
        std::string where = "none", margin = "-", delta = "-";
        if (flip_layer >= 0) {
          where = StrCat("(", flip_layer, ", ", flip_token, ")");
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.2e", Margin(ref.logits[flip_layer], flip_token, e, k));
          margin = buf;
          double d = 0;
          const size_t base = flip_token * static_cast<size_t>(e);
          for (int x = 0; x < e; ++x) {
            d = std::max(d, std::fabs(static_cast<double>(got.logits[flip_layer][base + x]) -
                                      ref.logits[flip_layer][base + x]));
          }
          std::snprintf(buf, sizeof buf, "%.2e", d);
          delta = buf;
        }
        std::printf("| %s | %s | %.2e @%zu | %s | %s | %s | %zu | %.2e | %.2e | %.2e | %.2f "
                    "| %.2e |\n",
                    probe.label.c_str(), CaseLabel(*m, p).c_str(), s.worst(), worst_at,
                    where.c_str(), margin.c_str(), delta.c_str(), flips, min_margin,
                    forced.worst(), forced.median(), Median(sigma_ref), Median(sigma_delta));
      }
    }
  }
}

}  // namespace
}  // namespace gs
