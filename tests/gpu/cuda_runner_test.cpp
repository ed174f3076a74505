// The whole CUDA runner against the CPU runner (the fp32 reference) on the random-weight demo
// model (make-demo-model: sliding and global layers, k_eq_v, proportional RoPE, NVFP4 MoE), for
// prompts shorter and longer than the sliding window and prefill chunks of 1, 7 and the whole
// prompt. Without the MoE block: every position KL(cpu ‖ cuda) < 1e-3, the same argmax, chunking
// invariance, greedy tokens the CPU also ranks on top, several sequences per batch, GPU greedy =
// argmax. With it: bf16 vs fp32 activations flip rare router near-ties (top-2 of 8), so the
// criteria are statistical (see ExpectClose); a layer-by-layer test localizes any mismatch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>

#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/cuda/cuda_runner.h"
#include "runtime/generate.h"
#include "runtime/sampling.h"
#include "tools/demo_model.h"

namespace gs {
namespace {

constexpr double kMaxKl = 1e-3;

struct Demo {
  ModelConfig config;
  Gemma4Weights weights;
};

Demo LoadDemo(bool moe = true) {
  const std::string dir = ::testing::TempDir() + "/gs_cuda_demo_model";
  DemoModelOptions o;
  o.output_dir = dir;
  o.overwrite = true;
  auto st = WriteDemoModel(o);
  EXPECT_TRUE(st.ok()) << st.error().message;
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.error().message;
  auto weights = LoadGemma4Weights(*config, dir);
  EXPECT_TRUE(weights.ok()) << weights.error().message;
  // The demo's random unit-scale q/k norms make every attention row nearly one-hot (scores with
  // a standard deviation of ~√head_dim): a bf16 rounding then flips which key wins and the
  // random model amplifies that layer after layer (measured: worst KL 7e-5 after one layer,
  // 5e-2 after six, always at isolated positions). Trained models attend far more softly;
  // scaling the norms by 0.35 gives scores of unit spread, so the comparison tests the code
  // rather than the chaos of a random network.
  for (LayerWeights& l : weights->layers) {
    for (float& v : l.attn.q_norm) v *= 0.35f;
    for (float& v : l.attn.k_norm) v *= 0.35f;
  }
  config->enable_moe_block = moe;
  return {*config, *weights};
}

// Router near-ties: with fp32 reference activations and bf16 ones, a token whose 2nd and 3rd
// expert logits are within rounding may pick different experts (top-2 of 8 in the demo), which
// changes that position's output a lot. Such positions are rare; everything else must be close.
struct Agreement {
  double worst = 0, median = 0, over = 0, argmax = 0;  // over = share of positions with KL > 1e-3
};

std::vector<int32_t> Prompt(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> id(3, vocab - 1);
  std::vector<int32_t> p = {2};
  while (static_cast<int>(p.size()) < n) p.push_back(id(rng));
  return p;
}

Agreement Compare(const std::vector<float>& ref, const std::vector<float>& ours, int vocab) {
  const size_t rows = ref.size() / vocab;
  Agreement a;
  std::vector<double> kls;
  size_t same = 0, over = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* x = &ref[r * vocab];
    const float* y = &ours[r * vocab];
    const double kl = gputest::KlDivergence(x, y, vocab);
    kls.push_back(std::isnan(kl) ? 1e30 : kl);
    over += !(kl <= kMaxKl);
    // The random demo's logits are flat: count a disagreement only when the reference ranks our
    // top token clearly (> 0.02) below its own.
    same += x[Argmax({y, static_cast<size_t>(vocab)})] >= x[Argmax({x, static_cast<size_t>(vocab)})] - 0.02f;
  }
  std::sort(kls.begin(), kls.end());
  a.worst = kls.back();
  a.median = kls[kls.size() / 2];
  a.over = static_cast<double>(over) / rows;
  a.argmax = static_cast<double>(same) / rows;
  return a;
}

// Without MoE: every position within KL 1e-3 and the same (clear) argmax everywhere.
void ExpectStrict(const Agreement& a, const std::string& what) {
  EXPECT_LT(a.worst, kMaxKl) << what;
  EXPECT_GE(a.argmax, 0.99) << what;
}

// With MoE: a router flip changes its position and, through attention, later ones (measured on
// a 100-token prompt: median KL 3.4e-4, 25% of positions above 1e-3); the median stays within
// the bound and most positions too.
void ExpectClose(const Agreement& a, const std::string& what) {
  EXPECT_LT(a.median, kMaxKl) << what;
  EXPECT_LE(a.over, 0.3) << what << " (worst KL " << a.worst << ")";
  EXPECT_GE(a.argmax, 0.9) << what;
}

class CudaRunnerDemoMoe : public ::testing::TestWithParam<bool> {};  // param: MoE block on

TEST_P(CudaRunnerDemoMoe, MatchesCpuRunnerForEveryChunking) {
  GS_REQUIRE_GPU();
  const bool moe = GetParam();
  Demo demo = LoadDemo(moe);
  const KvCacheSpec spec = KvSpecForSingleSequence(256, 16);
  CpuRunner cpu(demo.config, demo.weights, spec, CpuRunnerOptions{0, 0.0f});
  auto cuda = CreateCudaRunner(demo.config, demo.weights, spec);
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  const int vocab = demo.config.vocab_size;
  ASSERT_GT(demo.config.sliding_window, 7);
  for (int len : {1, 7, demo.config.sliding_window + 1, 100}) {
    const auto prompt = Prompt(len, vocab, 1000 + len);
    std::vector<float> whole;
    for (int chunk : {0, 1, 7}) {
      SCOPED_TRACE(::testing::Message() << "prompt " << len << " chunk " << chunk);
      GenerateOptions o;
      o.max_tokens = chunk == 0 ? 8 : 0;
      o.prefill_chunk = chunk;
      o.prompt_logits = true;
      o.ignore_eos = true;
      auto want = Generate(cpu, prompt, o);
      auto got = Generate(**cuda, prompt, o);
      ASSERT_TRUE(want.ok()) << want.error().message;
      ASSERT_TRUE(got.ok()) << got.error().message;
      const Agreement a = Compare(want->prompt_logits, got->prompt_logits, vocab);
      if (moe) ExpectClose(a, "prompt logits");
      else ExpectStrict(a, "prompt logits");
      if (chunk == 0) {
        whole = got->prompt_logits;
      } else if (!moe) {
        // The chunking changes only summation order on the GPU.
        ExpectStrict(Compare(whole, got->prompt_logits, vocab), "chunked vs whole on the GPU");
      }
      if (chunk != 0 || moe) continue;
      // Greedy: teacher-force the CUDA tokens through the CPU runner; each must be the CPU's top
      // token or within 0.1 of it (a near-tie may break either way in bf16); one router flip
      // among the 8 is tolerated.
      std::vector<int32_t> full = prompt;
      full.insert(full.end(), got->tokens.begin(), got->tokens.end());
      GenerateOptions score;
      score.max_tokens = 0;
      score.prompt_logits = true;
      auto scored = Generate(cpu, full, score);
      ASSERT_TRUE(scored.ok()) << scored.error().message;
      int off_top = 0;
      for (size_t i = 0; i < got->tokens.size(); ++i) {
        const float* row = &scored->prompt_logits[(prompt.size() - 1 + i) * vocab];
        const float best = row[Argmax({row, static_cast<size_t>(vocab)})];
        off_top += row[got->tokens[i]] < best - 0.1f;
      }
      EXPECT_LE(off_top, 1) << "generated tokens the CPU runner does not rank on top";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Demo, CudaRunnerDemoMoe, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "WithMoe" : "DenseOnly"; });

// FP8 (e4m3, per-row amax/448 scales) KV cache against the CPU runner, dense demo model, prefill
// chunks of 1 and 7 (every key but the current chunk's comes from the quantized cache) and 8
// greedy steps. e4m3 keeps 3 mantissa bits (relative error ≤ 2^-4 per element, RMS ≈ 0.036), so
// attention outputs move by a few percent, far above the bf16 criterion (KL 1e-3): the bound here
// is KL < 2e-2 at the median and the argmax of the reference at ≥ 95% of positions. The numbers
// are printed next to the BF16 KV runner's for the same prompts.
TEST(CudaRunnerDemo, Fp8KvCacheCloseToCpu) {
  GS_REQUIRE_GPU();
  Demo demo = LoadDemo(false);
  const KvCacheSpec spec = KvSpecForSingleSequence(256, 16);
  CpuRunner cpu(demo.config, demo.weights, spec, CpuRunnerOptions{0, 0.0f});
  CudaRunnerOptions fp8_opts;
  fp8_opts.kv_cache_dtype = "fp8";
  auto fp8 = CreateCudaRunner(demo.config, demo.weights, spec, fp8_opts);
  ASSERT_TRUE(fp8.ok()) << fp8.error().message;
  EXPECT_EQ((*fp8)->kv_cache_dtype(), "fp8");
  auto bf16 = CreateCudaRunner(demo.config, demo.weights, spec);
  ASSERT_TRUE(bf16.ok()) << bf16.error().message;
  const int vocab = demo.config.vocab_size;
  for (int len : {demo.config.sliding_window + 1, 100}) {
    const auto prompt = Prompt(len, vocab, 2000 + len);
    for (int chunk : {1, 7}) {
      SCOPED_TRACE(::testing::Message() << "prompt " << len << " chunk " << chunk);
      GenerateOptions o;
      o.max_tokens = 0;
      o.prefill_chunk = chunk;
      o.prompt_logits = true;
      auto want = Generate(cpu, prompt, o);
      auto got = Generate(**fp8, prompt, o);
      auto base = Generate(**bf16, prompt, o);
      ASSERT_TRUE(want.ok() && got.ok() && base.ok());
      const Agreement a = Compare(want->prompt_logits, got->prompt_logits, vocab);
      const Agreement b = Compare(want->prompt_logits, base->prompt_logits, vocab);
      std::cout << "FP8 KV prompt " << len << " chunk " << chunk << ": median KL " << a.median
                << ", worst " << a.worst << ", argmax " << a.argmax << " (BF16 KV: median "
                << b.median << ", worst " << b.worst << ")\n";
      EXPECT_LT(a.median, 2e-2);
      EXPECT_GE(a.argmax, 0.95);
    }
    GenerateOptions g;
    g.max_tokens = 8;
    g.ignore_eos = true;
    auto got = Generate(**fp8, prompt, g);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->tokens.size(), 8u);
  }
}

// Three sequences in one batch (different slots, lengths and block ranges), prefill then decode
// together, against the CPU runner given the same batches; plus ForwardGreedy = argmax.
TEST(CudaRunnerDemo, BatchedSequencesMatchCpu) {
  GS_REQUIRE_GPU();
  Demo demo = LoadDemo(/*moe=*/false);  // strict comparison; the MoE path is covered above
  KvCacheSpec spec;
  spec.max_sequences = 3;
  spec.block_size = 16;
  spec.num_global_blocks = 3 * 8;
  CpuRunner cpu(demo.config, demo.weights, spec, CpuRunnerOptions{0, 0.0f});
  auto cuda = CreateCudaRunner(demo.config, demo.weights, spec);
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  const int vocab = demo.config.vocab_size;
  const std::vector<int> lens = {5, 40, 1};
  std::vector<std::vector<int32_t>> prompts;
  for (size_t s = 0; s < lens.size(); ++s) prompts.push_back(Prompt(lens[s], vocab, 77 + s));
  auto seq = [&](int s, int first, int count, int start) {
    BatchSequence b;
    b.slot = 2 - s;
    b.first_token = first;
    b.num_tokens = count;
    b.start_position = start;
    for (int i = 0; i < 8; ++i) b.block_table.push_back((i * 3 + s * 5) % 24);  // interleaved blocks
    return b;
  };
  // Distinct blocks per sequence: (i·3 + s·5) mod 24 is injective over (s, i) for s < 3, i < 8.
  Batch pre;
  for (int s = 0; s < 3; ++s) {
    pre.sequences.push_back(seq(s, pre.num_tokens(), lens[s], 0));
    pre.token_ids.insert(pre.token_ids.end(), prompts[s].begin(), prompts[s].end());
    for (int i = 0; i < lens[s]; ++i) pre.logits_indices.push_back(pre.sequences.back().first_token + i);
  }
  std::vector<float> want, got;
  ASSERT_TRUE(cpu.Forward(pre, &want).ok());
  auto st = (*cuda)->Forward(pre, &got);
  ASSERT_TRUE(st.ok()) << st.error().message;
  ExpectStrict(Compare(want, got, vocab), "batched prefill");
  std::vector<int> pos = lens;
  std::vector<int32_t> next = {prompts[0].back(), prompts[1].back(), prompts[2].back()};
  for (int step = 0; step < 6; ++step) {
    Batch b;
    for (int s = 0; s < 3; ++s) {
      b.sequences.push_back(seq(s, s, 1, pos[s]++));
      b.token_ids.push_back((next[s] * 31 + step) % vocab);
      b.logits_indices.push_back(s);
    }
    ASSERT_TRUE(cpu.Forward(b, &want).ok());
    std::vector<int32_t> ids;
    st = (*cuda)->ForwardGreedy(b, &ids);
    ASSERT_TRUE(st.ok()) << st.error().message;
    st = (*cuda)->Forward(b, &got);  // same step again: rewrites identical K/V
    ASSERT_TRUE(st.ok()) << st.error().message;
    ExpectStrict(Compare(want, got, vocab), StrCat("decode step ", step));
    for (int s = 0; s < 3; ++s) {
      EXPECT_EQ(ids[s], Argmax({&got[static_cast<size_t>(s) * vocab], static_cast<size_t>(vocab)}));
      next[s] = ids[s];
    }
  }
}

// The demo model cut to its first 1..6 layers, with and without the MoE block: localizes a
// mismatch to the first layer (and block) where it appears. Prints the worst KL per position.
TEST(CudaRunnerDemo, LayerByLayerMatchesCpu) {
  GS_REQUIRE_GPU();
  const Demo demo = LoadDemo(/*moe=*/true);
  const int vocab = demo.config.vocab_size;
  const auto prompt = Prompt(40, vocab, 4242);
  for (bool moe : {false, true}) {
    for (int layers = 1; layers <= demo.config.num_layers; ++layers) {
      ModelConfig config = demo.config;
      Gemma4Weights weights = demo.weights;
      config.num_layers = layers;
      config.layers.resize(static_cast<size_t>(layers));
      weights.layers.resize(static_cast<size_t>(layers));
      config.enable_moe_block = moe;
      const KvCacheSpec spec = KvSpecForSingleSequence(64, 16);
      CpuRunner cpu(config, weights, spec, CpuRunnerOptions{0, 0.0f});
      auto cuda = CreateCudaRunner(config, weights, spec);
      ASSERT_TRUE(cuda.ok()) << cuda.error().message;
      GenerateOptions o;
      o.max_tokens = 0;
      o.prompt_logits = true;
      auto want = Generate(cpu, prompt, o);
      auto got = Generate(**cuda, prompt, o);
      ASSERT_TRUE(want.ok() && got.ok());
      std::string per_pos;
      double worst = 0;
      for (size_t t = 0; t < prompt.size(); ++t) {
        const double kl = gputest::KlDivergence(&want->prompt_logits[t * vocab],
                                                &got->prompt_logits[t * vocab], vocab);
        worst = std::max(worst, kl);
        per_pos += StrCat(t % 8 == 0 ? "\n  " : " ", kl);
      }
      std::cout << "moe " << moe << " layers " << layers << ": worst KL " << worst << per_pos
                << "\n";
      // Without the MoE block nothing can flip: every position within the bound.
      if (!moe) {
        EXPECT_LT(worst, kMaxKl) << "layers " << layers;
      } else {
        ExpectClose(Compare(want->prompt_logits, got->prompt_logits, vocab),
                    StrCat("moe layers ", layers));
      }
    }
  }
}

// `w` cut to its first `rows` rows and `cols` columns (new storage in `store`; NVFP4 columns in
// whole 16-column scale groups).
QuantizedLinear Narrow(const QuantizedLinear& w, int64_t rows, int64_t cols,
                       std::vector<std::unique_ptr<std::vector<uint8_t>>>& store) {
  const bool fp4 = w.format == WeightFormat::kNvfp4;
  const int64_t src = fp4 ? w.cols / 2 : w.cols * 2, dst = fp4 ? cols / 2 : cols * 2;
  auto data = std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(rows * dst));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(data->data() + r * dst, w.data + r * src, static_cast<size_t>(dst));
  }
  QuantizedLinear q = w;
  q.rows = rows;
  q.cols = cols;
  q.data = data->data();
  store.push_back(std::move(data));
  if (fp4) {
    auto sc = std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(rows * cols / 16));
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(sc->data() + r * (cols / 16), w.block_scale + r * (w.cols / 16),
                  static_cast<size_t>(cols / 16));
    }
    q.block_scale = sc->data();
    store.push_back(std::move(sc));
  }
  return q;
}

// Intermediate widths that are not multiples of the packed GEMM's 64-column k-block (the
// golden_vision text model: dense 96, experts 32; and dense 160, experts 96): the demo model's
// NVFP4 MLP and experts cut to those widths, the CUDA runner (zero-padded at load,
// nvfp4_repack.h PackedWidth) against the CPU runner on the same cut weights, prefill chunks of
// 0 and 7 and 8 greedy decode steps. Dense only: the strict criterion; with MoE: printed (router
// near-ties, see below) and required to run.
TEST(CudaRunnerDemo, OddIntermediateWidthsMatchCpu) {
  GS_REQUIRE_GPU();
  const Demo demo = LoadDemo(/*moe=*/true);
  const int vocab = demo.config.vocab_size;
  const auto prompt = Prompt(60, vocab, 777);
  for (auto [dense, expert] : {std::pair{96, 32}, std::pair{160, 96}}) {
    ModelConfig config = demo.config;
    Gemma4Weights weights = demo.weights;
    ASSERT_GE(config.intermediate_size, dense);
    ASSERT_GE(config.moe_intermediate_size, expert);
    config.intermediate_size = dense;
    config.moe_intermediate_size = expert;
    std::vector<std::unique_ptr<std::vector<uint8_t>>> store;
    const int64_t H = config.hidden_size;
    for (LayerWeights& l : weights.layers) {
      l.mlp_gate = Narrow(l.mlp_gate, dense, H, store);
      l.mlp_up = Narrow(l.mlp_up, dense, H, store);
      l.mlp_down = Narrow(l.mlp_down, H, dense, store);
      for (ExpertWeights& e : l.experts.experts) {
        e.gate = Narrow(e.gate, expert, H, store);
        e.up = Narrow(e.up, expert, H, store);
        e.down = Narrow(e.down, H, expert, store);
      }
    }
    for (bool moe : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dense " << dense << " experts " << expert << " moe "
                                        << moe);
      config.enable_moe_block = moe;
      const KvCacheSpec spec = KvSpecForSingleSequence(128, 16);
      CpuRunner cpu(config, weights, spec, CpuRunnerOptions{0, 0.0f});
      auto cuda = CreateCudaRunner(config, weights, spec);
      ASSERT_TRUE(cuda.ok()) << cuda.error().message;
      for (int chunk : {0, 7}) {
        GenerateOptions o;
        o.max_tokens = 8;
        o.prefill_chunk = chunk;
        o.prompt_logits = true;
        o.ignore_eos = true;
        auto want = Generate(cpu, prompt, o);
        auto got = Generate(**cuda, prompt, o);
        ASSERT_TRUE(want.ok()) << want.error().message;
        ASSERT_TRUE(got.ok()) << got.error().message;
        const Agreement a = Compare(want->prompt_logits, got->prompt_logits, vocab);
        std::printf("ODD widths dense %d experts %d moe %d chunk %d: worst KL %.2e, median "
                    "%.2e, argmax %.3f\n", dense, expert, moe, chunk, a.worst, a.median,
                    a.argmax);
        // With MoE the cut demo model has router near-ties that flip between fp32 orders and
        // cascade (160 / 96: median KL 7e-4, argmax 0.82 on the H100), so only the dense runs
        // are asserted here; the padded expert products themselves are checked against
        // cpu::RunExperts without a router in moe_test (GroupedExpertsOfPaddedWidthMatchCpu:
        // width 96 as accurate as 704, rel-L2 ≤ 2.4e-3).
        if (!moe) ExpectStrict(a, StrCat("chunk ", chunk));
        EXPECT_EQ(got->tokens.size(), 8u);
      }
    }
  }
}

// Decode steps replay a CUDA graph per batch bucket; --enforce-eager runs the same padded step
// kernel by kernel. Two runners fed the same batches (prefill, then decode at batch sizes 1, 3
// (padded to 4) and 4, with the MoE block) must produce bit-identical logits and greedy ids, and
// the graph runner must actually have replayed graphs.
TEST(CudaRunnerDemo, GraphDecodeIdenticalToEager) {
  GS_REQUIRE_GPU();
  Demo demo = LoadDemo(/*moe=*/true);
  KvCacheSpec spec;
  spec.max_sequences = 4;
  spec.block_size = 16;
  spec.num_global_blocks = 4 * 8;
  CudaRunnerOptions eager_opts;
  eager_opts.enforce_eager = true;
  auto eager = CreateCudaRunner(demo.config, demo.weights, spec, eager_opts);
  auto graph = CreateCudaRunner(demo.config, demo.weights, spec);
  ASSERT_TRUE(eager.ok()) << eager.error().message;
  ASSERT_TRUE(graph.ok()) << graph.error().message;
  const int vocab = demo.config.vocab_size;
  const auto seq = gputest::SlotSequence;
  for (int batch : {1, 3, 4}) {
    SCOPED_TRACE(::testing::Message() << "batch " << batch);
    Batch pre;
    for (int s = 0; s < batch; ++s) {
      const auto p = Prompt(9 + 5 * s, vocab, 300 + s + 10 * batch);
      pre.sequences.push_back(seq(s, pre.num_tokens(), static_cast<int>(p.size()), 0));
      pre.token_ids.insert(pre.token_ids.end(), p.begin(), p.end());
      pre.logits_indices.push_back(pre.num_tokens() - 1);
    }
    std::vector<int32_t> ids_e, ids_g;
    ASSERT_TRUE((*eager)->ForwardGreedy(pre, &ids_e).ok());
    ASSERT_TRUE((*graph)->ForwardGreedy(pre, &ids_g).ok());
    ASSERT_EQ(ids_e, ids_g);
    std::vector<int> pos;
    for (const auto& s : pre.sequences) pos.push_back(s.num_tokens);
    for (int step = 0; step < 6; ++step) {
      Batch b;
      for (int s = 0; s < batch; ++s) {
        b.sequences.push_back(seq(s, s, 1, pos[static_cast<size_t>(s)]++));
        b.token_ids.push_back(ids_g[static_cast<size_t>(s)]);
        b.logits_indices.push_back(s);
      }
      std::vector<float> le, lg;
      if (step % 2 == 0) {
        ASSERT_TRUE((*eager)->Forward(b, &le).ok());
        auto st = (*graph)->Forward(b, &lg);
        ASSERT_TRUE(st.ok()) << st.error().message;
        ASSERT_EQ(le.size(), static_cast<size_t>(batch) * vocab);
        ASSERT_EQ(lg.size(), le.size());
        EXPECT_EQ(0, std::memcmp(le.data(), lg.data(), le.size() * sizeof(float)))
            << "step " << step;
        ids_g.clear();
        for (int s = 0; s < batch; ++s) {
          ids_g.push_back(static_cast<int32_t>(
              Argmax({&lg[static_cast<size_t>(s) * vocab], static_cast<size_t>(vocab)})));
        }
      } else {
        ASSERT_TRUE((*eager)->ForwardGreedy(b, &ids_e).ok());
        auto st = (*graph)->ForwardGreedy(b, &ids_g);
        ASSERT_TRUE(st.ok()) << st.error().message;
        EXPECT_EQ(ids_e, ids_g) << "step " << step;
      }
    }
  }
  EXPECT_EQ((*eager)->graph_launches(), 0);
  EXPECT_GE((*graph)->graph_captures(), 2);   // buckets 1 and 4 (and any recapture)
  EXPECT_GE((*graph)->graph_launches(), 10);  // all but each bucket's warm-up and capture steps
}

// CopySlot (the engine's prefix caching): a prompt prefilled in slot 0, its sliding rings copied
// to slot 1, then the same next token decoded from slot 0 and from slot 1 (same global blocks)
// gives bit-identical logits; from slot 2, never filled, it does not (the copy mattered).
TEST(CudaRunnerDemo, CopySlotContinuesTheSequence) {
  GS_REQUIRE_GPU();
  Demo demo = LoadDemo(/*moe=*/false);
  KvCacheSpec spec;
  spec.max_sequences = 3;
  spec.block_size = 16;
  spec.num_global_blocks = 8;
  auto cuda = CreateCudaRunner(demo.config, demo.weights, spec);
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  ASSERT_TRUE((*cuda)->supports_slot_copy());
  const int vocab = demo.config.vocab_size;
  const int len = demo.config.sliding_window + 5;  // the ring wraps
  const auto prompt = Prompt(len, vocab, 99);
  auto one = [&](int slot, int first, int count, int start) {
    Batch b;
    BatchSequence s;
    s.slot = slot;
    s.num_tokens = count;
    s.start_position = start;
    for (int i = 0; i < 8; ++i) s.block_table.push_back(i);
    b.sequences.push_back(s);
    b.token_ids.assign(prompt.begin() + first, prompt.begin() + first + count);
    b.logits_indices = {count - 1};
    return b;
  };
  std::vector<float> pre, from0, from1, from2;
  ASSERT_TRUE((*cuda)->Forward(one(0, 0, len - 1, 0), &pre).ok());
  auto st = (*cuda)->CopySlot(0, 1);
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_TRUE((*cuda)->Forward(one(0, len - 1, 1, len - 1), &from0).ok());
  ASSERT_TRUE((*cuda)->Forward(one(1, len - 1, 1, len - 1), &from1).ok());
  ASSERT_TRUE((*cuda)->Forward(one(2, len - 1, 1, len - 1), &from2).ok());
  EXPECT_EQ(0, std::memcmp(from0.data(), from1.data(), from0.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(from0.data(), from2.data(), from0.size() * sizeof(float)));
  EXPECT_FALSE((*cuda)->CopySlot(0, 3).ok());
}

TEST(CudaRunnerDemo, RejectsBadBatches) {
  GS_REQUIRE_GPU();
  Demo demo = LoadDemo();
  auto cuda = CreateCudaRunner(demo.config, demo.weights, KvSpecForSingleSequence(32, 16));
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  Batch b;
  b.token_ids = {2, 5000000};
  BatchSequence s;
  s.num_tokens = 2;
  s.block_table = {0, 1};
  b.sequences = {s};
  b.logits_indices = {1};
  std::vector<float> logits;
  auto st = (*cuda)->Forward(b, &logits);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("vocabulary"), std::string::npos) << st.error().message;
  b.token_ids = {2, 3};
  b.sequences[0].block_table = {0, 99};
  st = (*cuda)->Forward(b, &logits);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("block"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace gs
