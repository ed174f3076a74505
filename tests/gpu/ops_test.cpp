// The small kernels against the CPU reference ops: RMSNorm (with row gather), the post-attention
// residual + FFN input norms, per-head q/k/v norms with default and proportional RoPE (positions
// up to 262143, accurate sincos) and their decode fusion with the KV write, embedding, softcap,
// argmax, and the cuBLASLt BF16 GEMM at the attention / lm_head shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "gpu/gpu_test_util.h"
#include "runtime/cpu/cpu_ops.h"
#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/kernels.h"

namespace gs {
namespace {

using cuda::bf16;
using gputest::DeviceArray;

std::vector<float> Normal(size_t n, float stddev, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Ops, RmsNormWithAndWithoutWeightAndGather) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(1);
  const int rows = 9, width = 2816;
  const auto x = Normal(static_cast<size_t>(rows) * width, 3.0f, rng);
  const auto w = Normal(width, 1.0f, rng);
  DeviceArray<float> dx, dw;
  dx.Upload(x);
  dw.Upload(w);
  const std::vector<int> gather = {8, 0, 3};
  DeviceArray<int> dg;
  dg.Upload(gather);
  for (bool weighted : {true, false}) {
    DeviceArray<bf16> out(gather.size() * width);
    out.Poison();
    GS_ASSERT_OK(cuda::LaunchRmsNorm(dx.get(), dg.get(), 3, width, weighted ? dw.get() : nullptr,
                                     1e-6f, out.get(), nullptr));
    std::vector<float> want;
    for (int r : gather) want.insert(want.end(), x.begin() + r * width, x.begin() + (r + 1) * width);
    cpu::RmsNorm(want.data(), 3, width, weighted ? std::span<const float>(w) : std::span<const float>(), 1e-6f);
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(out.Download()), want, width), 4e-3);
  }
}

TEST(Ops, PostAttentionResidualAndFfnNorms) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(2);
  const int t = 17, H = 2816;
  const auto h = Normal(static_cast<size_t>(t) * H, 5.0f, rng), a = Normal(h.size(), 2.0f, rng);
  const auto w1 = Normal(H, 1.0f, rng), w2 = Normal(H, 1.0f, rng), w3 = Normal(H, 1.0f, rng);
  DeviceArray<float> dh, da, d1, d2, d3;
  dh.Upload(h);
  da.Upload(a);
  d1.Upload(w1);
  d2.Upload(w2);
  d3.Upload(w3);
  const auto rs = Normal(H, 1.0f, rng);
  DeviceArray<float> drs, router_in(h.size());
  drs.Upload(rs);
  DeviceArray<bf16> xd(h.size()), xm(h.size());
  xd.Poison();
  xm.Poison();
  router_in.Poison();
  GS_ASSERT_OK(cuda::LaunchPostAttention(dh.get(), da.get(), t, H, d1.get(), d2.get(), d3.get(),
                                         drs.get(), 1e-6f, xd.get(), xm.get(), router_in.get(),
                                         nullptr));
  std::vector<float> h1 = h, an = a;
  cpu::RmsNorm(an.data(), t, H, w1, 1e-6f);
  for (size_t i = 0; i < h1.size(); ++i) h1[i] += an[i];
  std::vector<float> wd = h1, wm = h1;
  cpu::RmsNorm(wd.data(), t, H, w2, 1e-6f);
  cpu::RmsNorm(wm.data(), t, H, w3, 1e-6f);
  EXPECT_LT(gputest::WorstRowRelL2(dh.Download(), h1, H), 1e-6);
  EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(xd.Download()), wd, H), 4e-3);
  EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(xm.Download()), wm, H), 4e-3);
  // The router input stays fp32: rms(h1) ⊙ router_scale · H^-½.
  std::vector<float> wr = h1, rs_root(rs);
  for (float& v : rs_root) v /= std::sqrt(static_cast<float>(H));
  cpu::RmsNorm(wr.data(), t, H, rs_root, 1e-6f);
  EXPECT_LT(gputest::WorstRowRelL2(router_in.Download(), wr, H), 1e-6);
}

// Sliding: 16 q heads, 8 kv heads × 256, default RoPE θ 1e4. Global: 2 kv heads × 512, k_eq_v,
// proportional RoPE θ 1e6 over 64 of 256 pairs.
TEST(Ops, QkvNormRopeMatchesCpu) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(3);
  const std::vector<int> positions = {0, 1, 7, 1023, 1024, 5000, 131071, 262143};
  const int t = static_cast<int>(positions.size()), heads = 16;
  for (bool global : {false, true}) {
    const int d = global ? 512 : 256, kv = global ? 2 : 8;
    RopeConfig rope;
    rope.type = global ? RopeType::kProportional : RopeType::kDefault;
    rope.theta = global ? 1e6 : 1e4;
    rope.partial_rotary_factor = global ? 0.25 : 1.0;
    const auto inv = rope.InverseFrequencies(d);
    const int cols = (heads + (global ? 1 : 2) * kv) * d;
    const auto qkv = Normal(static_cast<size_t>(t) * cols, 2.0f, rng);
    const auto qn = Normal(d, 1.0f, rng), kn = Normal(d, 1.0f, rng);
    DeviceArray<float> dqkv, dqn, dkn, dinv;
    DeviceArray<int> dpos;
    dqkv.Upload(qkv);
    dqn.Upload(qn);
    dkn.Upload(kn);
    dinv.Upload(inv);
    dpos.Upload(positions);
    DeviceArray<bf16> q(static_cast<size_t>(t) * heads * d), k(static_cast<size_t>(t) * kv * d),
        v(static_cast<size_t>(t) * kv * d);
    q.Poison();
    k.Poison();
    v.Poison();
    GS_ASSERT_OK(cuda::LaunchQkvNormRope(dqkv.get(), t, heads, kv, d, global, dqn.get(), dkn.get(),
                                         dinv.get(), dpos.get(), 1e-6f, q.get(), k.get(), v.get(),
                                         nullptr));
    std::vector<float> wq, wk, wv;
    for (int i = 0; i < t; ++i) {
      const float* r = qkv.data() + static_cast<size_t>(i) * cols;
      std::vector<float> qi(r, r + heads * d), ki(r + heads * d, r + (heads + kv) * d);
      std::vector<float> vi = global ? ki : std::vector<float>(r + (heads + kv) * d, r + cols);
      cpu::RmsNorm(qi.data(), heads, d, qn, 1e-6f);
      cpu::RmsNorm(ki.data(), kv, d, kn, 1e-6f);
      cpu::RmsNorm(vi.data(), kv, d, {}, 1e-6f);
      for (int h = 0; h < heads; ++h) cpu::ApplyRope(&qi[h * d], d, positions[i], inv);
      for (int h = 0; h < kv; ++h) cpu::ApplyRope(&ki[h * d], d, positions[i], inv);
      wq.insert(wq.end(), qi.begin(), qi.end());
      wk.insert(wk.end(), ki.begin(), ki.end());
      wv.insert(wv.end(), vi.begin(), vi.end());
    }
    // Per head: bf16 storage is the only rounding.
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(q.Download()), wq, d), 4e-3) << d;
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(k.Download()), wk, d), 4e-3) << d;
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(v.Download()), wv, d), 4e-3) << d;
  }
}

// The decode fusion (qk-norm/RoPE + KV write in one kernel) against the unfused path
// (LaunchQkvNormRope, then LaunchKvWrite; both checked against the CPU above and in
// attention_test): q, k, v and every cache byte and FP8 scale must be identical, on ring
// (sliding) and paged (global) caches, BF16 and FP8. One token per sequence, as in decode.
TEST(Ops, QkvNormRopeKvEqualsUnfusedPath) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(11);
  const std::vector<int> positions = {0, 1, 7, 1023, 1024, 5000, 40000};
  const int t = static_cast<int>(positions.size()), heads = 16, window = 1024, block = 16;
  for (bool global : {false, true}) {
    for (bool fp8 : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (global ? "global" : "sliding")
                                        << (fp8 ? " fp8" : " bf16"));
      const int d = global ? 512 : 256, kv = global ? 2 : 8;
      RopeConfig rope;
      rope.theta = 1e4;
      const auto inv = rope.InverseFrequencies(d);
      const int cols = (heads + (global ? 1 : 2) * kv) * d;
      const auto qkv = Normal(static_cast<size_t>(t) * cols, 2.0f, rng);
      const auto qn = Normal(d, 1.0f, rng), kn = Normal(d, 1.0f, rng);
      // Sequence i: slot t-1-i (ring), or blocks of its own (paged: distinct, shuffled tables).
      std::vector<int> start, first, count, slot, table, tables, tseq;
      int next_block = 0;
      for (int i = 0; i < t; ++i) {
        start.push_back(positions[i]);
        first.push_back(i);
        count.push_back(1);
        slot.push_back(t - 1 - i);
        table.push_back(static_cast<int>(tables.size()));
        for (int b = 0; b <= positions[i] / block; ++b) tables.push_back(next_block++);
        tseq.push_back(i);
      }
      std::shuffle(tables.begin(), tables.end(), rng);
      const size_t rows = global ? static_cast<size_t>(next_block) * block
                                 : static_cast<size_t>(t) * window;
      const size_t cache_bytes = rows * kv * d * (fp8 ? 1 : 2);
      DeviceArray<float> dqkv, dqn, dkn, dinv;
      DeviceArray<int> dstart, dfirst, dcount, dslot, dtable, dtables, dtseq, dpos;
      dqkv.Upload(qkv);
      dqn.Upload(qn);
      dkn.Upload(kn);
      dinv.Upload(inv);
      dstart.Upload(start);
      dfirst.Upload(first);
      dcount.Upload(count);
      dslot.Upload(slot);
      dtable.Upload(table);
      dtables.Upload(tables);
      dtseq.Upload(tseq);
      dpos.Upload(positions);
      cuda::AttentionMeta meta;
      meta.seq_start = dstart.get();
      meta.seq_first = dfirst.get();
      meta.seq_count = dcount.get();
      meta.seq_slot = dslot.get();
      meta.seq_table = dtable.get();
      meta.block_tables = dtables.get();
      meta.token_seq = dtseq.get();
      meta.positions = dpos.get();
      struct Outputs {
        DeviceArray<bf16> q, k, v;
        DeviceArray<uint8_t> kc, vc;
        DeviceArray<float> ks, vs;
      };
      auto run = [&](bool fused, Outputs& o) {
        o.q.Resize(static_cast<size_t>(t) * heads * d);
        o.k.Resize(static_cast<size_t>(t) * kv * d);
        o.v.Resize(static_cast<size_t>(t) * kv * d);
        o.kc.Resize(cache_bytes);
        o.vc.Resize(cache_bytes);
        o.ks.Resize(rows * kv);
        o.vs.Resize(rows * kv);
        for (auto* a : {&o.q, &o.k, &o.v}) a->Poison();
        for (auto* a : {&o.kc, &o.vc}) a->Poison();
        for (auto* a : {&o.ks, &o.vs}) a->Poison();
        cuda::AttentionLayer layer;
        layer.heads = heads;
        layer.kv_heads = kv;
        layer.head_dim = d;
        layer.window = global ? 0 : window;
        layer.block_size = block;
        layer.kv_dtype = fp8 ? cuda::KvDtype::kFp8E4m3 : cuda::KvDtype::kBf16;
        layer.k_cache = o.kc.get();
        layer.v_cache = o.vc.get();
        layer.k_scale = fp8 ? o.ks.get() : nullptr;
        layer.v_scale = fp8 ? o.vs.get() : nullptr;
        if (fused) {
          GS_ASSERT_OK(cuda::LaunchQkvNormRopeKv(dqkv.get(), t, heads, global, dqn.get(),
                                                 dkn.get(), dinv.get(), 1e-6f, layer, meta,
                                                 o.q.get(), o.k.get(), o.v.get(), nullptr));
        } else {
          GS_ASSERT_OK(cuda::LaunchQkvNormRope(dqkv.get(), t, heads, kv, d, global, dqn.get(),
                                               dkn.get(), dinv.get(), dpos.get(), 1e-6f,
                                               o.q.get(), o.k.get(), o.v.get(), nullptr));
          GS_ASSERT_OK(cuda::LaunchKvWrite(layer, meta, o.k.get(), o.v.get(), t, nullptr));
        }
      };
      Outputs want, got;
      run(false, want);
      run(true, got);
      auto bits = [](const DeviceArray<bf16>& a) {
        std::vector<uint16_t> out;
        for (const bf16& x : a.Download()) out.push_back(__nv_bfloat16_raw(x).x);
        return out;
      };
      EXPECT_EQ(bits(got.q), bits(want.q));
      EXPECT_EQ(bits(got.k), bits(want.k));
      EXPECT_EQ(bits(got.v), bits(want.v));
      const auto kc = got.kc.Download(), vc = got.vc.Download();
      EXPECT_EQ(kc, want.kc.Download()) << "K cache bytes";
      EXPECT_EQ(vc, want.vc.Download()) << "V cache bytes";
      // Every token's rows were written (not left as the 0xFF poison).
      size_t written = 0;
      for (uint8_t b : kc) written += b != 0xff;
      EXPECT_GE(written, static_cast<size_t>(t) * kv * d * (fp8 ? 1 : 2) * 9 / 10);
      if (fp8) {
        const auto ks = got.ks.Download(), vs = got.vs.Download();
        const auto wks = want.ks.Download(), wvs = want.vs.Download();
        EXPECT_EQ(0, std::memcmp(ks.data(), wks.data(), ks.size() * sizeof(float))) << "K scales";
        EXPECT_EQ(0, std::memcmp(vs.data(), wvs.data(), vs.size() * sizeof(float))) << "V scales";
      }
    }
  }
}

TEST(Ops, EmbedSoftcapArgmax) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(4);
  const int vocab = 1000, H = 2816;
  const auto table = gputest::RandomBf16Values(static_cast<size_t>(vocab) * H, 0.05f, rng);
  DeviceArray<bf16> dt;
  dt.Upload(gputest::ToBf16(table));
  const std::vector<int> ids = {0, 999, 5, 5, 17};
  DeviceArray<int> did;
  did.Upload(ids);
  DeviceArray<float> h(ids.size() * H);
  h.Poison();
  GS_ASSERT_OK(cuda::LaunchEmbed(did.get(), 5, dt.get(), H, 53.0f, h.get(), nullptr));
  const auto got = h.Download();
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int c = 0; c < H; ++c) {
      ASSERT_EQ(got[t * H + c], table[static_cast<size_t>(ids[t]) * H + c] * 53.0f);
    }
  }

  const int rows = 3, n = 262144;
  auto logits = Normal(static_cast<size_t>(rows) * n, 20.0f, rng);
  logits[7] = 500.0f;                   // row 0: clear winner
  logits[n + 100] = logits[n + 50] = 900.0f;  // row 1: a tie -> the lower index
  logits[2 * n + n - 1] = 1e4f;         // row 2: the last element
  DeviceArray<float> dl;
  dl.Upload(logits);
  GS_ASSERT_OK(cuda::LaunchSoftcap(dl.get(), static_cast<int64_t>(rows) * n, 30.0f, nullptr));
  DeviceArray<int> am(rows);
  am.Poison();
  GS_ASSERT_OK(cuda::LaunchArgmax(dl.get(), rows, n, am.get(), nullptr));
  std::vector<float> want = logits;
  cpu::Softcap(want, 30.0f);
  const auto capped = dl.Download();
  EXPECT_LT(gputest::RelL2(capped.data(), want.data(), want.size()), 1e-6);
  EXPECT_EQ(am.Download(), (std::vector<int>{7, 50, n - 1}));
}

// cuBLASLt: q/k/v projection (8192 × 2816), o_proj (2816 × 4096) and an lm_head-like 32768-row
// slice, fp32 and bf16 outputs.
TEST(Ops, Bf16GemmMatchesCpu) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  cuda::Bf16Gemm gemm;
  GS_ASSERT_OK(gemm.Init());
  ThreadPool pool(0);
  for (auto [n, k] : {std::pair{8192, 2816}, std::pair{2816, 4096}, std::pair{32768, 2816}}) {
    const auto w = gputest::RandomBf16Values(static_cast<size_t>(n) * k, 0.02f, rng);
    DeviceArray<bf16> dw;
    dw.Upload(gputest::ToBf16(w));
    std::vector<uint8_t> wb(w.size() * 2);
    for (size_t i = 0; i < w.size(); ++i) {
      const uint16_t b = FloatToBf16(w[i]);
      std::memcpy(&wb[2 * i], &b, 2);
    }
    QuantizedLinear q;
    q.format = WeightFormat::kBf16;
    q.rows = n;
    q.cols = k;
    q.data = wb.data();
    for (int m : {1, 3, 17, 129}) {
      const auto x = gputest::RandomBf16Values(static_cast<size_t>(m) * k, 1.0f, rng);
      DeviceArray<bf16> dx;
      dx.Upload(gputest::ToBf16(x));
      std::vector<float> want(static_cast<size_t>(m) * n);
      cpu::Linear(q, x.data(), m, want.data(), pool);
      DeviceArray<float> out(want.size());
      out.Poison();
      GS_ASSERT_OK(gemm.Run(dx.get(), m, k, dw.get(), n, out.get(), true, 1.0f, nullptr));
      EXPECT_LT(gputest::WorstRowRelL2(out.Download(), want, n), 1e-5) << n << "x" << k << " m " << m;
      DeviceArray<bf16> out16(want.size());
      out16.Poison();
      GS_ASSERT_OK(gemm.Run(dx.get(), m, k, dw.get(), n, out16.get(), false, 1.0f, nullptr));
      EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(out16.Download()), want, n), 4e-3);
    }
  }
}

}  // namespace
}  // namespace gs
