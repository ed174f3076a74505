// The MoE kernels (moe.cu + the banked packed GEMM) against the CPU runner's cpu::Route and
// cpu::RunExperts at the real 26B-A4B shapes (128 experts, top-8, 704 wide, hidden 2816), and the
// feed-forward combine against the reference formula at decode and prefill token counts and the
// real and test models' widths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "gpu/gpu_test_util.h"
#include "runtime/cpu/cpu_moe.h"
#include "runtime/cpu/cpu_ops.h"
#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/nvfp4_repack.h"

namespace gs {
namespace {

using cuda::bf16;
using gputest::DeviceArray;

constexpr int kHidden = 2816, kExperts = 128, kTopK = 8, kInter = 704;

struct MoeFixture {
  ModelConfig config;
  LayerWeights w;
  std::vector<std::vector<uint8_t>> storage;
  std::vector<uint8_t> router_bytes;

  void AddNvfp4(QuantizedLinear& q, int64_t rows, int64_t cols, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> byte(0, 255);
    storage.emplace_back(static_cast<size_t>(rows * cols / 2));
    for (auto& b : storage.back()) b = static_cast<uint8_t>(byte(rng));
    q.data = storage.back().data();
    storage.emplace_back(static_cast<size_t>(rows * cols / 16));
    // Mostly e4m3 bytes in [0x30, 0x40]; some negative, zero or subnormal (RandomScaleByte).
    for (auto& b : storage.back()) b = gputest::RandomScaleByte(rng, 0x30, 0x40);
    q.block_scale = storage.back().data();
    q.format = WeightFormat::kNvfp4;
    q.rows = rows;
    q.cols = cols;
    q.global_scale = std::uniform_real_distribution<float>(0.001f, 0.004f)(rng);
  }

  // The router weights on the GPU widened to fp32, as the runner holds them (LaunchBf16ToF32).
  void UploadRouterF32(DeviceArray<float>& router) const {
    DeviceArray<bf16> router_bf16;
    std::vector<bf16> rb(router_bytes.size() / 2);
    std::memcpy(static_cast<void*>(rb.data()), router_bytes.data(), router_bytes.size());
    router_bf16.Upload(rb);
    router.Resize(static_cast<size_t>(kExperts) * kHidden);
    GS_ASSERT_OK(cuda::LaunchBf16ToF32(router_bf16.get(), static_cast<int64_t>(router.size()),
                                       router.get(), nullptr));
  }

  explicit MoeFixture(uint64_t seed, int inter = kInter) {
    std::mt19937_64 rng(seed);
    config.hidden_size = kHidden;
    config.num_experts = kExperts;
    config.top_k_experts = kTopK;
    config.moe_intermediate_size = inter;
    config.enable_moe_block = true;
    config.rms_norm_eps = 1e-6;
    const auto rw = gputest::RandomBf16Values(static_cast<size_t>(kExperts) * kHidden, 1.0f, rng);
    router_bytes.resize(rw.size() * 2);
    for (size_t i = 0; i < rw.size(); ++i) {
      const uint16_t b = FloatToBf16(rw[i]);
      std::memcpy(&router_bytes[2 * i], &b, 2);
    }
    w.router.name = "router";
    w.router.format = WeightFormat::kBf16;
    w.router.rows = kExperts;
    w.router.cols = kHidden;
    w.router.data = router_bytes.data();
    std::uniform_real_distribution<float> around_one(0.5f, 1.5f);
    for (int i = 0; i < kHidden; ++i) w.router_scale.push_back(around_one(rng));
    for (int e = 0; e < kExperts; ++e) w.per_expert_scale.push_back(around_one(rng));
    storage.reserve(6 * kExperts + 4);
    w.experts.experts.resize(kExperts);
    for (auto& ex : w.experts.experts) {
      AddNvfp4(ex.gate, inter, kHidden, rng);
      AddNvfp4(ex.up, inter, kHidden, rng);
      AddNvfp4(ex.down, kHidden, inter, rng);
    }
  }
};

// Near-ties between the k-th and (k+1)-th router logit may legitimately order differently in
// fp32 on the two devices; this reports whether token t has one (logits in double).
bool NearTie(const MoeFixture& f, const float* h1) {
  std::vector<double> r(kHidden);
  double ss = 0;
  for (int c = 0; c < kHidden; ++c) ss += static_cast<double>(h1[c]) * h1[c];
  const double inv = 1.0 / std::sqrt(ss / kHidden + 1e-6);
  for (int c = 0; c < kHidden; ++c) r[c] = h1[c] * inv * f.w.router_scale[c] / std::sqrt(double{kHidden});
  std::vector<double> l(kExperts, 0.0);
  std::vector<float> row(kHidden);
  for (int e = 0; e < kExperts; ++e) {
    f.w.router.DequantizeRowUnscaled(e, row.data());
    for (int c = 0; c < kHidden; ++c) l[e] += r[c] * row[c];
  }
  std::sort(l.begin(), l.end(), std::greater<>());
  for (int j = 0; j < kTopK; ++j) {
    if (l[j] - l[j + 1] < 1e-4) return true;
  }
  return false;
}

// The runner's router: fp32 input from LaunchPostAttention (attention output 0 here, so h1 = h),
// fp32 GEMM against the widened router weights (cuBLASLt), then top-k + grouping.
TEST(Moe, RouterMatchesCpu) {
  GS_REQUIRE_GPU();
  MoeFixture f(1);
  ThreadPool pool(0);
  std::mt19937_64 rng(2);
  DeviceArray<float> router;
  ASSERT_NO_FATAL_FAILURE(f.UploadRouterF32(router));
  cuda::Bf16Gemm gemm;
  GS_ASSERT_OK(gemm.Init());
  DeviceArray<float> scale, pes, ones;
  scale.Upload(f.w.router_scale);
  pes.Upload(f.w.per_expert_scale);
  ones.Upload(std::vector<float>(kHidden, 1.0f));
  for (int t : {1, 3, 8, 17, 64, 129, 300}) {
    std::normal_distribution<float> dist(0.0f, 3.0f);
    std::vector<float> h1(static_cast<size_t>(t) * kHidden);
    for (float& v : h1) v = dist(rng);
    DeviceArray<float> dh, zero, router_in(h1.size());
    dh.Upload(h1);
    zero.Upload(std::vector<float>(h1.size(), 0.0f));
    DeviceArray<bf16> xd(h1.size());
    DeviceArray<int> ids(static_cast<size_t>(t) * kTopK), offsets(kExperts + 1),
        entries(ids.size()), active(kExperts), count(1);
    DeviceArray<float> wts(ids.size()), logits(static_cast<size_t>(t) * kExperts);
    ids.Poison();
    wts.Poison();
    logits.Poison();
    router_in.Poison();
    GS_ASSERT_OK(cuda::LaunchPostAttention(dh.get(), zero.get(), t, kHidden, ones.get(),
                                           ones.get(), ones.get(), scale.get(), 1e-6f, xd.get(),
                                           nullptr, router_in.get(), nullptr));
    if (t <= cuda::kRouterGemvTokens) {  // as the runner: the decode GEMV, else cuBLASLt
      GS_ASSERT_OK(cuda::LaunchRouterLogits(router_in.get(), t, kHidden, router.get(), kExperts,
                                            logits.get(), nullptr));
    } else {
      GS_ASSERT_OK(gemm.RunF32(router_in.get(), t, kHidden, router.get(), kExperts, logits.get(),
                               nullptr));
    }
    GS_ASSERT_OK(cuda::LaunchRouterSelect(logits.get(), t, kExperts, kTopK, pes.get(), nullptr,
                                          ids.get(), wts.get(), offsets.get(), entries.get(),
                                          active.get(), count.get(), nullptr));
    const auto got_ids = ids.Download();
    const auto got_w = wts.Download();
    const cpu::Routing want = cpu::Route(f.config, f.w, h1.data(), t, pool);
    int ties = 0;
    for (int i = 0; i < t; ++i) {
      bool same = true;
      for (int j = 0; j < kTopK; ++j) same &= got_ids[i * kTopK + j] == want.experts[i * kTopK + j];
      if (!same && NearTie(f, &h1[static_cast<size_t>(i) * kHidden])) {
        ++ties;
        continue;
      }
      ASSERT_TRUE(same) << "tokens " << t << ": token " << i << " routed differently";
      for (int j = 0; j < kTopK; ++j) {
        EXPECT_NEAR(got_w[i * kTopK + j], want.weights[i * kTopK + j], 2e-5)
            << "token " << i << " slot " << j;
      }
    }
    EXPECT_LE(ties, 1) << "too many near-ties to be chance";
    // The grouping: every slot once, under its expert, experts ascending.
    const auto off = offsets.Download(), ent = entries.Download(), act = active.Download();
    const int n_active = count.Download()[0];
    std::vector<int> seen(ids.size(), 0);
    int prev = -1;
    for (int a = 0; a < n_active; ++a) {
      const int e = act[a];
      ASSERT_GT(e, prev);
      prev = e;
      for (int r = off[e]; r < off[e + 1]; ++r) {
        ASSERT_EQ(got_ids[ent[r]], e);
        ++seen[ent[r]];
      }
    }
    for (int v : seen) ASSERT_EQ(v, 1);
  }
}

// The decode router in one launch (LaunchRouterDecode: the last block of the logits GEMV does
// the top-k and grouping) against the two launches RouterMatchesCpu checks: identical logits,
// ids, weights, offsets and active experts, the same slots under each expert; with and without
// bucket padding (valid_tokens); launched three times on one counter, which must come back 0.
TEST(Moe, RouterDecodeEqualsTwoLaunches) {
  GS_REQUIRE_GPU();
  MoeFixture f(1);
  std::mt19937_64 rng(5);
  DeviceArray<float> router;
  ASSERT_NO_FATAL_FAILURE(f.UploadRouterF32(router));
  DeviceArray<float> pes;
  pes.Upload(f.w.per_expert_scale);
  DeviceArray<int> done;
  done.Upload({0});
  for (int t : {1, 3, 8}) {
    for (int valid : {t, (t + 1) / 2}) {
      SCOPED_TRACE(::testing::Message() << t << " tokens, " << valid << " valid");
      std::normal_distribution<float> dist(0.0f, 0.05f);
      std::vector<float> x(static_cast<size_t>(t) * kHidden);
      for (float& v : x) v = dist(rng);
      DeviceArray<float> dx;
      dx.Upload(x);
      DeviceArray<int> dvalid;
      dvalid.Upload({valid});
      struct Out {
        DeviceArray<float> logits, wts;
        DeviceArray<int> ids, offsets, entries, active, count;
      };
      auto alloc = [&](Out& o) {
        o.logits.Resize(static_cast<size_t>(t) * kExperts);
        o.wts.Resize(static_cast<size_t>(t) * kTopK);
        o.ids.Resize(static_cast<size_t>(t) * kTopK);
        o.offsets.Resize(kExperts + 1);
        o.entries.Resize(static_cast<size_t>(t) * kTopK);
        o.active.Resize(kExperts);
        o.count.Resize(1);
        o.logits.Poison();
        o.wts.Poison();
        for (auto* a : {&o.ids, &o.offsets, &o.entries, &o.active, &o.count}) a->Poison();
      };
      Out want;
      alloc(want);
      GS_ASSERT_OK(cuda::LaunchRouterLogits(dx.get(), t, kHidden, router.get(), kExperts,
                                            want.logits.get(), nullptr));
      GS_ASSERT_OK(cuda::LaunchRouterSelect(want.logits.get(), t, kExperts, kTopK, pes.get(),
                                            dvalid.get(), want.ids.get(), want.wts.get(),
                                            want.offsets.get(), want.entries.get(),
                                            want.active.get(), want.count.get(), nullptr));
      auto floats = [](const DeviceArray<float>& a) {
        std::vector<uint32_t> bits;
        for (float v : a.Download()) {
          uint32_t b;
          std::memcpy(&b, &v, 4);
          bits.push_back(b);
        }
        return bits;
      };
      // Slots per active expert, sorted (their order inside an expert is an atomic's).
      auto groups = [](const Out& o) {
        const auto off = o.offsets.Download(), ent = o.entries.Download();
        const auto act = o.active.Download();
        std::vector<std::vector<int>> g;
        for (int a = 0; a < o.count.Download()[0]; ++a) {
          std::vector<int> slots(ent.begin() + off[act[a]], ent.begin() + off[act[a] + 1]);
          std::sort(slots.begin(), slots.end());
          g.push_back(std::move(slots));
        }
        return g;
      };
      for (int run = 0; run < 3; ++run) {
        Out got;
        alloc(got);
        GS_ASSERT_OK(cuda::LaunchRouterDecode(
            dx.get(), t, kHidden, router.get(), kExperts, kTopK, pes.get(), dvalid.get(),
            got.logits.get(), got.ids.get(), got.wts.get(), got.offsets.get(), got.entries.get(),
            got.active.get(), got.count.get(), done.get(), nullptr));
        EXPECT_EQ(floats(got.logits), floats(want.logits)) << "run " << run;
        EXPECT_EQ(got.ids.Download(), want.ids.Download()) << "run " << run;
        EXPECT_EQ(floats(got.wts), floats(want.wts)) << "run " << run;
        EXPECT_EQ(got.offsets.Download(), want.offsets.Download()) << "run " << run;
        EXPECT_EQ(got.count.Download(), want.count.Download()) << "run " << run;
        const int n_active = want.count.Download()[0];
        const auto ga = got.active.Download(), wa = want.active.Download();
        EXPECT_TRUE(std::equal(wa.begin(), wa.begin() + n_active, ga.begin())) << "run " << run;
        EXPECT_EQ(groups(got), groups(want)) << "run " << run;
        EXPECT_EQ(done.Download()[0], 0) << "the block counter was not reset";
      }
    }
  }
}

// The gate/up launch's rows over grouped routing tables of t tokens, as the runner sets them.
cuda::GemmRows GateUpRows(const DeviceArray<int>& active, const DeviceArray<int>& count,
                          const DeviceArray<int>& offsets, const DeviceArray<int>& entries, int t) {
  cuda::GemmRows rows;
  rows.active = active.get();
  rows.active_count = count.get();
  rows.max_active = std::min(kExperts, t * kTopK);
  rows.offsets = offsets.get();
  rows.entries = entries.get();
  rows.m = t;  // an expert sees each token at most once
  rows.in_div = kTopK;
  return rows;
}

// All experts of a fixture packed as banks, as the runner holds them, on the GPU.
struct PackedBanks {
  DeviceArray<uint8_t> c1, s1, c2, s2;
  DeviceArray<float> g1, g2;
  cuda::PackedMatrix gate_up, down;

  PackedBanks(const MoeFixture& f, int inter_width) {
    const int64_t packed = cuda::PackedWidth(inter_width);
    const int64_t gu_codes = cuda::PackedCodeBytes(WeightFormat::kNvfp4, 2 * packed, kHidden);
    const int64_t gu_scales = cuda::PackedScaleBytes(WeightFormat::kNvfp4, 2 * packed, kHidden);
    const int64_t d_codes = cuda::PackedCodeBytes(WeightFormat::kNvfp4, kHidden, packed);
    const int64_t d_scales = cuda::PackedScaleBytes(WeightFormat::kNvfp4, kHidden, packed);
    std::vector<uint8_t> hc1(kExperts * gu_codes), hs1(kExperts * gu_scales);
    std::vector<uint8_t> hc2(kExperts * d_codes), hs2(kExperts * d_scales);
    std::vector<float> hg1, hg2;
    for (int e = 0; e < kExperts; ++e) {
      const ExpertWeights& ex = f.w.experts.experts[e];
      for (const Status& st :
           {cuda::PackGlu(ex.gate, ex.up, packed, &hc1[e * gu_codes], &hs1[e * gu_scales]),
            cuda::PackLinear(ex.down, packed, &hc2[e * d_codes], &hs2[e * d_scales])}) {
        EXPECT_TRUE(st.ok()) << st.error().message;  // (a constructor: no ASSERT)
      }
      hg1.push_back(ex.gate.global_scale * cuda::kNvfp4DequantOffset);
      hg1.push_back(ex.up.global_scale * cuda::kNvfp4DequantOffset);
      hg2.push_back(ex.down.global_scale * cuda::kNvfp4DequantOffset);
    }
    c1.Upload(hc1);
    s1.Upload(hs1);
    c2.Upload(hc2);
    s2.Upload(hs2);
    g1.Upload(hg1);
    g2.Upload(hg2);
    gate_up = {cuda::PackedFormat::kNvfp4, c1.get(), s1.get(), gu_codes, gu_scales, g1.get(),
               static_cast<int>(2 * packed), kHidden};
    down = {cuda::PackedFormat::kNvfp4, c2.get(), s2.get(), d_codes, d_scales, g2.get(), kHidden,
            static_cast<int>(packed)};
  }
};

// Expert GLU + down projection (router weight in the epilogue) over the grouped slots, summed
// per token on the host in slot order, against cpu::RunExperts with the same routing.
// The expert GLU and down projections of the runner at the real width, and at a width that is not
// a multiple of 64 (packed with zero padding to 128: nvfp4_repack.h PackedWidth), against
// cpu::RunExperts on random routings of 1..129 tokens.
void CheckGroupedExperts(int inter_width) {
  MoeFixture f(3, inter_width);
  const int64_t kInter = inter_width, kPacked = cuda::PackedWidth(kInter);
  ThreadPool pool(0);
  std::mt19937_64 rng(4);
  const PackedBanks banks(f, inter_width);
  const cuda::PackedMatrix& gate_up = banks.gate_up;
  const cuda::PackedMatrix& down = banks.down;

  for (int t : {1, 3, 17, 64, 129}) {
    // Routing: random distinct experts per token, weights in (0, 1); for t = 129 every token
    // also picks expert 5, so one expert has more than 64 tokens (two chunks).
    cpu::Routing routing;
    std::vector<int> perm(kExperts);
    std::iota(perm.begin(), perm.end(), 0);
    for (int i = 0; i < t; ++i) {
      std::shuffle(perm.begin(), perm.end(), rng);
      if (t == 129) std::iter_swap(perm.begin(), std::find(perm.begin(), perm.end(), 5));
      for (int j = 0; j < kTopK; ++j) {
        routing.experts.push_back(perm[j]);
        routing.weights.push_back(std::uniform_real_distribution<float>(0.05f, 1.0f)(rng));
      }
    }
    const auto x = gputest::RandomBf16Values(static_cast<size_t>(t) * kHidden, 1.0f, rng);
    std::vector<float> want(x.size());
    cpu::RunExperts(f.config, f.w, routing, x.data(), t, want.data(), pool);

    const int slots = t * kTopK;
    DeviceArray<int> ids, offsets(kExperts + 1), entries(slots), active(kExperts), count(1);
    ids.Upload(routing.experts);
    DeviceArray<float> wts;
    wts.Upload(routing.weights);
    DeviceArray<bf16> dx, inter(static_cast<size_t>(slots) * kPacked);
    dx.Upload(gputest::ToBf16(x));
    DeviceArray<float> slot_out(static_cast<size_t>(slots) * kHidden);
    for (auto* a : {&offsets, &entries, &active, &count}) a->Poison();
    inter.Poison();
    slot_out.Poison();
    GS_ASSERT_OK(cuda::LaunchMoeGroup(ids.get(), slots, 1, nullptr, kExperts, offsets.get(), entries.get(),
                                      active.get(), count.get(), nullptr));
    // The grouping itself: offsets partition the slots by expert, in ascending expert order.
    const auto off = offsets.Download(), ent = entries.Download(), act = active.Download();
    const int n_active = count.Download()[0];
    ASSERT_EQ(off[kExperts], slots);
    std::vector<int> seen(slots, 0);
    int listed = 0;
    for (int e = 0; e < kExperts; ++e) {
      ASSERT_LE(off[e], off[e + 1]);
      if (off[e + 1] > off[e]) {
        ASSERT_EQ(act[listed++], e);
      }
      for (int i = off[e]; i < off[e + 1]; ++i) {
        ASSERT_EQ(routing.experts[ent[i]], e);
        ++seen[ent[i]];
      }
    }
    ASSERT_EQ(listed, n_active);
    for (int s : seen) ASSERT_EQ(s, 1);

    // Both tiled-kernel shapes (1 or 2 weight tiles per warp) with the split-K decode kernel's
    // own choice of warps per tile, then (the same tiled shape) each forced split.
    const int default_m_tiles = cuda::PackedGemmMTiles();
    for (auto [m_tiles, split] : {std::pair{1, 0}, std::pair{2, 0}, std::pair{2, 1},
                                  std::pair{2, 2}, std::pair{2, 4}, std::pair{2, 8}}) {
      cuda::SetPackedGemmMTiles(m_tiles);
      cuda::SetGemvSplit(split);
      inter.Poison();
      slot_out.Poison();
      cuda::GemmRows rows = GateUpRows(active, count, offsets, entries, t);
      GS_ASSERT_OK(cuda::LaunchPackedGemm(gate_up, rows, dx.get(), kHidden, inter.get(),
                                          static_cast<int>(kPacked),
                                          cuda::GemmEpilogue::kGluBf16, nullptr));
      rows.in_div = 1;
      rows.row_weight = wts.get();
      GS_ASSERT_OK(cuda::LaunchPackedGemm(down, rows, inter.get(), static_cast<int>(kPacked),
                                          slot_out.get(), kHidden, cuda::GemmEpilogue::kStoreF32,
                                          nullptr));
      const auto so = slot_out.Download();
      std::vector<float> got(x.size(), 0.0f);
      for (int i = 0; i < t; ++i) {
        for (int j = 0; j < kTopK; ++j) {
          for (int c = 0; c < kHidden; ++c) {
            got[static_cast<size_t>(i) * kHidden + c] +=
                so[(static_cast<size_t>(i) * kTopK + j) * kHidden + c];
          }
        }
      }
      // The GPU rounds the GLU output to bf16 before the down projection.
      const double err = gputest::WorstRowRelL2(got, want, kHidden);
      std::printf("MOE experts width %d (packed %d), %d tokens, m-tiles %d, split %d: worst row "
                  "rel-L2 %.2e\n", inter_width, static_cast<int>(kPacked), t, m_tiles, split, err);
      EXPECT_LT(err, 1e-2) << "width " << inter_width << " tokens " << t << ", m-tiles "
                           << m_tiles << ", split " << split;
    }
    cuda::SetPackedGemmMTiles(default_m_tiles);
    cuda::SetGemvSplit(0);
  }
}

TEST(Moe, GroupedExpertsMatchCpu) {
  GS_REQUIRE_GPU();
  CheckGroupedExperts(kInter);
}

TEST(Moe, GroupedExpertsOfPaddedWidthMatchCpu) {
  GS_REQUIRE_GPU();
  CheckGroupedExperts(96);
}

using gputest::Bits;

// The experts' down projection as the runner launches it, with its routing tables read before
// the PDL wait (GemmRows::routing_settled: the router ran before gate/up), against the same
// launch reading them after the wait: the same bits in every slot, at decode token counts whose
// expert blocks fill the GPU in one wave or not, with padding tokens (no slots) or without.
TEST(Moe, SettledRoutingEqualsUnsettled) {
  GS_REQUIRE_GPU();
  MoeFixture f(3);
  const PackedBanks banks(f, kInter);
  const int packed = static_cast<int>(cuda::PackedWidth(kInter));
  std::mt19937_64 rng(8);
  DeviceArray<float> pes;
  pes.Upload(f.w.per_expert_scale);
  for (int t : {1, 3, 8, 32}) {
    for (int valid : {t, (t + 1) / 2}) {
      SCOPED_TRACE(::testing::Message() << t << " tokens, " << valid << " valid");
      const int slots = t * kTopK;
      std::normal_distribution<float> dist(0.0f, 1.0f);
      std::vector<float> logits(static_cast<size_t>(t) * kExperts);
      for (float& v : logits) v = dist(rng);
      DeviceArray<float> dlogits, wts(slots);
      dlogits.Upload(logits);
      DeviceArray<int> dvalid, ids(slots), offsets(kExperts + 1), entries(slots),
          active(kExperts), count(1);
      dvalid.Upload({valid});
      DeviceArray<bf16> dx, inter(static_cast<size_t>(slots) * packed);
      dx.Upload(gputest::ToBf16(gputest::RandomBf16Values(static_cast<size_t>(t) * kHidden, 1.0f, rng)));
      GS_ASSERT_OK(cuda::LaunchRouterSelect(dlogits.get(), t, kExperts, kTopK, pes.get(),
                                            dvalid.get(), ids.get(), wts.get(), offsets.get(),
                                            entries.get(), active.get(), count.get(), nullptr));
      cuda::GemmRows rows = GateUpRows(active, count, offsets, entries, t);
      inter.Poison();
      GS_ASSERT_OK(cuda::LaunchPackedGemm(banks.gate_up, rows, dx.get(), kHidden, inter.get(),
                                          packed, cuda::GemmEpilogue::kGluBf16, nullptr));
      rows.in_div = 1;
      rows.row_weight = wts.get();
      std::vector<uint32_t> out[2];
      for (int settled : {0, 1}) {
        DeviceArray<float> slot_out(static_cast<size_t>(slots) * kHidden);
        slot_out.Poison();
        rows.routing_settled = settled != 0;
        GS_ASSERT_OK(cuda::LaunchPackedGemm(banks.down, rows, inter.get(), packed, slot_out.get(),
                                            kHidden, cuda::GemmEpilogue::kStoreF32, nullptr));
        out[settled] = Bits(slot_out.Download());
      }
      EXPECT_EQ(out[1], out[0]);
      // Valid slots written, padding slots not (0xFFFFFFFF: the poison).
      const size_t used = static_cast<size_t>(valid) * kTopK * kHidden;
      EXPECT_EQ(std::count(out[1].begin(), out[1].begin() + used, 0xffffffffu), 0);
      EXPECT_EQ(static_cast<size_t>(std::count(out[1].begin() + used, out[1].end(), 0xffffffffu)),
                out[1].size() - used);
    }
  }
}

// The router folded through the o projection (router_fold.cu) as the runner runs it for one
// token: LaunchRouterFold's C rows appended to W_o, the o GEMV over H + 2E rows, LaunchRouterFoldH
// on h, then LaunchPostAttentionRouted. Against cpu::Route on h1 = h + rms(o)·w_post ⊙ o with o
// in double: the same experts in the same order (near-ties aside), the same weights; logits
// within 1e-4 of their spread; h1 as the unfolded post-attention computes it (the o rows' fp32
// sums may group differently); active_count top_k, or 0 for a padding token; the A count left
// at 0. At both attention widths of the 26B-A4B (sliding 16×256, global 16×512).
TEST(Moe, FoldedRouterRoutesAsTheRouter) {
  GS_REQUIRE_GPU();
  MoeFixture f(11);
  ThreadPool pool(0);
  std::mt19937_64 rng(12);
  DeviceArray<float> router;
  ASSERT_NO_FATAL_FAILURE(f.UploadRouterF32(router));
  cuda::Bf16Gemm gemm;
  GS_ASSERT_OK(gemm.Init());
  std::uniform_real_distribution<float> around_one(0.5f, 1.5f);
  auto norm_w = [&] {
    std::vector<float> v(kHidden);
    for (float& x : v) x = around_one(rng);
    return v;
  };
  const std::vector<float> post_attn = norm_w(), pre_ffn = norm_w(), pre_ffn_2 = norm_w();
  DeviceArray<float> d_post, d_pre, d_pre2, d_scale, d_pes;
  d_post.Upload(post_attn);
  d_pre.Upload(pre_ffn);
  d_pre2.Upload(pre_ffn_2);
  d_scale.Upload(f.w.router_scale);
  d_pes.Upload(f.w.per_expert_scale);
  const float eps = 1e-6f;
  int ties = 0, cases = 0;
  for (int q_rows : {4096, 8192}) {
    const auto wo = gputest::RandomBf16Values(static_cast<size_t>(kHidden) * q_rows,
                                              1.0f / std::sqrt(static_cast<float>(q_rows)), rng);
    DeviceArray<bf16> o_ext(static_cast<size_t>(kHidden + 2 * kExperts) * q_rows);
    o_ext.Poison();
    const auto wo_bf16 = gputest::ToBf16(wo);
    GS_CUDA_ASSERT(cudaMemcpy(o_ext.get(), wo_bf16.data(), wo_bf16.size() * sizeof(bf16),
                              cudaMemcpyHostToDevice));
    DeviceArray<float> r_scaled(static_cast<size_t>(kExperts) * kHidden);
    r_scaled.Poison();
    GS_ASSERT_OK(cuda::LaunchRouterFold(router.get(), d_scale.get(), d_post.get(), o_ext.get(),
                                        kExperts, kHidden, q_rows, r_scaled.get(),
                                        o_ext.get() + static_cast<size_t>(kHidden) * q_rows,
                                        nullptr));
    DeviceArray<int> done;
    done.Upload({0});
    for (int trial = 0; trial < 6; ++trial) {
      SCOPED_TRACE(::testing::Message() << "q_rows " << q_rows << " trial " << trial);
      const auto attn = gputest::RandomBf16Values(q_rows, 1.0f, rng);
      std::vector<float> h(kHidden);
      std::normal_distribution<float> hd(0.0f, 2.0f);
      for (float& v : h) v = hd(rng);
      // The reference h1 in double, then in fp32 for cpu::Route.
      std::vector<double> o(kHidden, 0.0);
      for (int c = 0; c < kHidden; ++c) {
        for (int j = 0; j < q_rows; ++j) o[c] += double{wo[static_cast<size_t>(c) * q_rows + j]} * attn[j];
      }
      double ss = 0;
      for (double v : o) ss += v * v;
      const double inv_a = 1.0 / std::sqrt(ss / kHidden + eps);
      std::vector<float> h1(kHidden);
      for (int c = 0; c < kHidden; ++c) h1[c] = static_cast<float>(h[c] + o[c] * inv_a * post_attn[c]);
      const cpu::Routing want = cpu::Route(f.config, f.w, h1.data(), 1, pool);

      DeviceArray<bf16> d_attn, xd(kHidden), xm(kHidden);
      d_attn.Upload(gputest::ToBf16(attn));
      DeviceArray<float> dh, out(kHidden + 2 * kExperts), a(kExperts), logits(kExperts),
          wts(kTopK);
      dh.Upload(h);
      DeviceArray<int> ids(kTopK), count(1), valid;
      valid.Upload({trial == 5 ? 0 : 1});  // the last trial: a padding token
      for (auto* arr : {&out, &a, &logits, &wts}) arr->Poison();
      ids.Poison();
      count.Poison();
      GS_ASSERT_OK(gemm.Run(d_attn.get(), 1, q_rows, o_ext.get(), kHidden + 2 * kExperts,
                            out.get(), true, 1.0f, nullptr));
      GS_ASSERT_OK(cuda::LaunchRouterFoldH(dh.get(), kHidden, r_scaled.get(), kExperts, a.get(),
                                           done.get(), nullptr));
      GS_ASSERT_OK(cuda::LaunchPostAttentionRouted(
          dh.get(), out.get(), kHidden, kExperts, a.get(), done.get(), d_post.get(), d_pre.get(),
          d_pre2.get(), eps, xd.get(), xm.get(), logits.get(), kTopK, d_pes.get(), valid.get(),
          ids.get(), wts.get(), count.get(), nullptr));
      EXPECT_EQ(done.Download()[0], 0);
      EXPECT_EQ(count.Download()[0], trial == 5 ? 0 : kTopK);
      // h1 in place, against the reference in double: within fp32 regrouping of o's 4096 or
      // 8192 products, relative to h1's RMS.
      const auto got_h1 = dh.Download();
      double worst_h1 = 0, h1_ss = 0;
      for (int c = 0; c < kHidden; ++c) {
        worst_h1 = std::max(worst_h1, std::abs(got_h1[c] - double{h1[c]}));
        h1_ss += double{h1[c]} * h1[c];
      }
      const double h1_rms = std::sqrt(h1_ss / kHidden);
      EXPECT_LT(worst_h1, 2e-5 * h1_rms) << "h1 RMS " << h1_rms;
      // Logits against the reference in double (router bf16 weights, fp32 h1 as above).
      double rs = 0;
      for (float v : h1) rs += double{v} * v;
      const double inv_h = 1.0 / std::sqrt(rs / kHidden + eps);
      std::vector<float> row(kHidden);
      std::vector<double> ref(kExperts, 0.0);
      for (int e = 0; e < kExperts; ++e) {
        f.w.router.DequantizeRowUnscaled(e, row.data());
        for (int c = 0; c < kHidden; ++c) {
          ref[e] += double{row[c]} * h1[c] * inv_h * f.w.router_scale[c] / std::sqrt(double{kHidden});
        }
      }
      const auto got_logits = logits.Download();
      const double spread = *std::max_element(ref.begin(), ref.end()) -
                            *std::min_element(ref.begin(), ref.end());
      double worst = 0;
      for (int e = 0; e < kExperts; ++e) worst = std::max(worst, std::abs(got_logits[e] - ref[e]));
      std::printf("FOLDED router q_rows %d trial %d: worst logit error %.2e of a spread %.2f, "
                  "worst h1 error %.2e of an RMS %.2f\n", q_rows, trial, worst, spread, worst_h1,
                  h1_rms);
      EXPECT_LT(worst, 1e-4 * spread);
      const auto got_ids = ids.Download();
      const auto got_w = wts.Download();
      bool same = true;
      for (int j = 0; j < kTopK; ++j) same &= got_ids[j] == want.experts[j];
      ++cases;
      if (!same && NearTie(f, h1.data())) {
        ++ties;
        continue;
      }
      ASSERT_TRUE(same);
      for (int j = 0; j < kTopK; ++j) EXPECT_NEAR(got_w[j], want.weights[j], 2e-5) << "slot " << j;
    }
  }
  EXPECT_LE(ties, 1) << "too many near-ties in " << cases << " cases to be chance";
}

// LaunchPackedGemvPair (the dense MLP and the experts in one grid, the experts as one token's
// ungrouped top-k slots) against the separate launches the runner makes otherwise (the dense
// matrix alone; the experts over LaunchMoeGroup's tables): the experts' GLU and down outputs
// bit-identical in every slot, the dense ones bit-identical where both use the same warps per
// tile (gate/up) and within fp32 regrouping otherwise (down: K 128 against the experts' 704).
TEST(Moe, GemvPairEqualsSeparateLaunches) {
  GS_REQUIRE_GPU();
  MoeFixture f(3), fd(4, 96);
  const PackedBanks banks(f, kInter), dense_banks(fd, 96);
  const int packed = static_cast<int>(cuda::PackedWidth(kInter));
  const int dpacked = static_cast<int>(cuda::PackedWidth(96));
  std::mt19937_64 rng(9);
  std::vector<int> perm(kExperts);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::vector<int> topk(perm.begin(), perm.begin() + kTopK);
  std::vector<float> weights;
  for (int j = 0; j < kTopK; ++j) weights.push_back(std::uniform_real_distribution<float>(0.05f, 1.0f)(rng));
  DeviceArray<int> ids, offsets(kExperts + 1), entries(kTopK), active(kExperts), count(1);
  ids.Upload(topk);
  DeviceArray<float> wts;
  wts.Upload(weights);
  GS_ASSERT_OK(cuda::LaunchMoeGroup(ids.get(), kTopK, kTopK, nullptr, kExperts, offsets.get(),
                                    entries.get(), active.get(), count.get(), nullptr));
  DeviceArray<bf16> x_moe, x_dense;
  x_moe.Upload(gputest::ToBf16(gputest::RandomBf16Values(kHidden, 1.0f, rng)));
  x_dense.Upload(gputest::ToBf16(gputest::RandomBf16Values(kHidden, 1.0f, rng)));
  cuda::GemmRows dense;
  dense.m = 1;
  cuda::GemmRows slots;
  slots.active = ids.get();
  slots.max_active = kTopK;
  slots.one_token_slots = true;
  slots.m = 1;
  slots.in_div = kTopK;
  cuda::GemmRows grouped = GateUpRows(active, count, offsets, entries, 1);
  struct Out {
    DeviceArray<bf16> inter_e, inter_d;
    DeviceArray<float> out_e, out_d;
  } pair, sep;
  for (Out* o : {&pair, &sep}) {
    o->inter_e.Resize(static_cast<size_t>(kTopK) * packed);
    o->inter_d.Resize(static_cast<size_t>(dpacked));
    o->out_e.Resize(static_cast<size_t>(kTopK) * kHidden);
    o->out_d.Resize(kHidden);
    o->inter_e.Poison();
    o->inter_d.Poison();
    o->out_e.Poison();
    o->out_d.Poison();
  }
  GS_ASSERT_OK(cuda::LaunchPackedGemvPair(dense_banks.gate_up, dense, x_dense.get(), kHidden,
                                          pair.inter_d.get(), dpacked, banks.gate_up, slots,
                                          x_moe.get(), kHidden, pair.inter_e.get(), packed,
                                          cuda::GemmEpilogue::kGluBf16, nullptr));
  slots.in_div = 1;
  slots.row_weight = wts.get();
  slots.routing_settled = true;
  GS_ASSERT_OK(cuda::LaunchPackedGemvPair(dense_banks.down, dense, pair.inter_d.get(), dpacked,
                                          pair.out_d.get(), kHidden, banks.down, slots,
                                          pair.inter_e.get(), packed, pair.out_e.get(), kHidden,
                                          cuda::GemmEpilogue::kStoreF32, nullptr));
  GS_ASSERT_OK(cuda::LaunchPackedGemm(dense_banks.gate_up, dense, x_dense.get(), kHidden,
                                      sep.inter_d.get(), dpacked, cuda::GemmEpilogue::kGluBf16,
                                      nullptr));
  GS_ASSERT_OK(cuda::LaunchPackedGemm(banks.gate_up, grouped, x_moe.get(), kHidden,
                                      sep.inter_e.get(), packed, cuda::GemmEpilogue::kGluBf16,
                                      nullptr));
  GS_ASSERT_OK(cuda::LaunchPackedGemm(dense_banks.down, dense, sep.inter_d.get(), dpacked,
                                      sep.out_d.get(), kHidden, cuda::GemmEpilogue::kStoreF32,
                                      nullptr));
  grouped.in_div = 1;
  grouped.row_weight = wts.get();
  GS_ASSERT_OK(cuda::LaunchPackedGemm(banks.down, grouped, sep.inter_e.get(), packed,
                                      sep.out_e.get(), kHidden, cuda::GemmEpilogue::kStoreF32,
                                      nullptr));
  EXPECT_EQ(Bits(pair.inter_e.Download()), Bits(sep.inter_e.Download()));
  EXPECT_EQ(Bits(pair.out_e.Download()), Bits(sep.out_e.Download()));
  EXPECT_EQ(Bits(pair.inter_d.Download()), Bits(sep.inter_d.Download()));
  const auto got_d = pair.out_d.Download(), want_d = sep.out_d.Download();
  EXPECT_EQ(std::count_if(got_d.begin(), got_d.end(), [](float v) { return std::isnan(v); }), 0);
  EXPECT_LT(gputest::WorstRowRelL2(got_d, want_d, kHidden), 1e-5);
}

// The combine of t tokens at width H against the reference formula (kernels.h) on the CPU ops;
// with_next: the fused next-layer input norm (x_next), else x_next stays untouched. Two runs
// give the same bits.
void CheckFfnCombine(int t, int H, int top_k, bool with_moe, bool with_next, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "tokens " << t << " hidden " << H << " top_k " << top_k
                                    << " moe " << with_moe << " next " << with_next);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::uniform_real_distribution<float> around_one(0.5f, 1.5f);
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
  };
  auto norm_w = [&] {
    std::vector<float> v(static_cast<size_t>(H));
    for (float& x : v) x = around_one(rng);
    return v;
  };
  const size_t n = static_cast<size_t>(t) * H;
  const auto h = fill(n), dense = fill(n), slots = fill(n * top_k);
  const auto p1 = norm_w(), p2 = norm_w(), p = norm_w(), next = norm_w();
  const float scalar = 0.7f;
  std::vector<float> want = h;
  for (int i = 0; i < t; ++i) {
    std::vector<float> d(dense.begin() + static_cast<std::ptrdiff_t>(i) * H,
                         dense.begin() + static_cast<std::ptrdiff_t>(i + 1) * H);
    if (with_moe) {
      std::vector<float> m(static_cast<size_t>(H), 0.0f);
      for (int j = 0; j < top_k; ++j) {
        for (int c = 0; c < H; ++c) m[c] += slots[(static_cast<size_t>(i) * top_k + j) * H + c];
      }
      cpu::RmsNorm(d.data(), 1, H, p1, 1e-6f);
      cpu::RmsNorm(m.data(), 1, H, p2, 1e-6f);
      for (int c = 0; c < H; ++c) d[c] += m[c];
    }
    cpu::RmsNorm(d.data(), 1, H, p, 1e-6f);
    for (int c = 0; c < H; ++c) {
      float& o = want[static_cast<size_t>(i) * H + c];
      o = (o + d[c]) * scalar;
    }
  }
  DeviceArray<float> dh, dd, ds, d1, d2, dp, dn;
  dd.Upload(dense);
  ds.Upload(slots);
  d1.Upload(p1);
  d2.Upload(p2);
  dp.Upload(p);
  dn.Upload(next);
  DeviceArray<bf16> x_next(n);
  auto run = [&] {
    dh.Upload(h);
    x_next.Poison();
    EXPECT_TRUE(cuda::LaunchFfnCombine(dh.get(), dd.get(), with_moe ? ds.get() : nullptr, top_k,
                                       t, H, d1.get(), d2.get(), dp.get(), scalar, 1e-6f,
                                       with_next ? dn.get() : nullptr,
                                       with_next ? x_next.get() : nullptr, nullptr)
                    .ok());
  };
  run();
  const auto got_h = dh.Download();
  const auto got_x = x_next.Download();
  EXPECT_LT(gputest::WorstRowRelL2(got_h, want, H), 1e-5);
  if (with_next) {
    // The next layer's input norm, fused: bf16(rms(h) ⊙ next).
    std::vector<float> want_x = want;
    cpu::RmsNorm(want_x.data(), t, H, next, 1e-6f);
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(got_x), want_x, H), 4e-3);
  } else {
    for (uint16_t b : Bits(got_x)) ASSERT_EQ(b, 0xffff);
  }
  run();
  EXPECT_EQ(Bits(dh.Download()), Bits(got_h)) << "not deterministic";
  EXPECT_EQ(Bits(x_next.Download()), Bits(got_x)) << "not deterministic";
}

// Decode to prefill token counts; the real hidden size, the test models' (64, 96), a width that
// is not a multiple of 4 and one too wide for the register-resident MoE form (4000); top-k 8, 2
// and 10 (more slots than the register-resident form sums); the last layer (no x_next). In the
// register-resident form where the shape allows it, and in the generic form forced.
TEST(Moe, FfnCombineMatchesReference) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic form" : "default form");
    cuda::SetRowKernelsGeneric(generic);
    for (int H : {kHidden, 96, 64, 94, 4000}) {
      for (int t : {1, 3, 17, 64, 129}) {
        for (bool with_moe : {true, false}) CheckFfnCombine(t, H, kTopK, with_moe, true, rng);
      }
    }
    for (int H : {kHidden, 96}) {
      CheckFfnCombine(3, H, 2, true, true, rng);
      CheckFfnCombine(3, H, 10, true, true, rng);
      CheckFfnCombine(17, H, kTopK, true, false, rng);
      CheckFfnCombine(17, H, kTopK, false, false, rng);
    }
  }
  cuda::SetRowKernelsGeneric(false);
}

TEST(Moe, FfnCombineRejectsBadArguments) {
  GS_REQUIRE_GPU();
  DeviceArray<float> f(64);
  DeviceArray<bf16> b(64);
  const auto next = cuda::LaunchFfnCombine(f.get(), f.get(), nullptr, 1, 1, 64, nullptr, nullptr,
                                           f.get(), 1.0f, 1e-6f, nullptr, b.get(), nullptr);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().message.find("next_norm"), std::string::npos) << next.error().message;
  const auto moe = cuda::LaunchFfnCombine(f.get(), f.get(), f.get(), 0, 1, 64, f.get(), f.get(),
                                          f.get(), 1.0f, 1e-6f, nullptr, nullptr, nullptr);
  ASSERT_FALSE(moe.ok());
  EXPECT_NE(moe.error().message.find("top_k"), std::string::npos) << moe.error().message;
}

}  // namespace
}  // namespace gs
