// The small kernels against the CPU reference ops: RMSNorm (with row gather), the post-attention
// residual + FFN input norms, per-head q/k/v norms with default and proportional RoPE (positions
// up to 262143, accurate sincos) and their decode fusion with the KV write, embedding, the fused
// softcap + greedy argmax, and the cuBLASLt BF16 GEMM at the attention / lm_head shapes. The row
// kernels run at decode and prefill token counts, at the real and the test models' widths, in
// their register-resident and generic forms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

// Token counts and widths of the row-kernel tests: decode sizes to past a wave of blocks; the
// real hidden size, the test models' (64, 96), a width that is not a multiple of 4 (the generic
// form) and one too wide for the register-resident form.
constexpr int kRowCounts[] = {1, 3, 17, 64, 129};

using gputest::Bits;

// Runs the body with the register-resident row kernels (where the width allows them), then with
// the generic form forced; restores the default.
template <class F>
void ForBothRowForms(F&& body) {
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic form" : "default form");
    cuda::SetRowKernelsGeneric(generic);
    body(generic);
  }
  cuda::SetRowKernelsGeneric(false);
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
  ForBothRowForms([&](bool) {
    for (bool weighted : {true, false}) {
      DeviceArray<bf16> out(gather.size() * width);
      out.Poison();
      GS_ASSERT_OK(cuda::LaunchRmsNorm(dx.get(), dg.get(), 3, width,
                                       weighted ? dw.get() : nullptr, 1e-6f, out.get(), nullptr));
      std::vector<float> want;
      for (int r : gather) {
        want.insert(want.end(), x.begin() + r * width, x.begin() + (r + 1) * width);
      }
      cpu::RmsNorm(want.data(), 3, width,
                   weighted ? std::span<const float>(w) : std::span<const float>(), 1e-6f);
      EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(out.Download()), want, width), 4e-3);
    }
  });
}

// Every token count × width, weighted or not, with a reversed gather; a misaligned x (offset by
// one float: the generic form) too. Two runs give the same bits.
TEST(Ops, RmsNormShapesMatchCpuAndRepeat) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(21);
  ForBothRowForms([&](bool) {
    for (int width : {2816, 96, 64, 94, 20000}) {
      for (int rows : kRowCounts) {
        SCOPED_TRACE(::testing::Message() << "width " << width << " rows " << rows);
        const auto x = Normal(static_cast<size_t>(rows) * width + 1, 3.0f, rng);
        const auto w = Normal(width, 1.0f, rng);
        DeviceArray<float> dx, dw;
        dx.Upload(x);
        dw.Upload(w);
        std::vector<int> gather(rows);
        for (int i = 0; i < rows; ++i) gather[i] = rows - 1 - i;
        DeviceArray<int> dg;
        dg.Upload(gather);
        for (int variant = 0; variant < 3; ++variant) {  // weighted+gather, plain, misaligned
          const bool weighted = variant != 1, gathered = variant == 0, shifted = variant == 2;
          auto run = [&] {
            DeviceArray<bf16> out(static_cast<size_t>(rows) * width);
            out.Poison();
            EXPECT_TRUE(cuda::LaunchRmsNorm(dx.get() + (shifted ? 1 : 0),
                                            gathered ? dg.get() : nullptr, rows, width,
                                            weighted ? dw.get() : nullptr, 1e-6f, out.get(),
                                            nullptr)
                            .ok());
            return out.Download();
          };
          const auto got = run();
          std::vector<float> want;
          for (int i = 0; i < rows; ++i) {
            const size_t r = static_cast<size_t>(gathered ? gather[i] : i);
            const auto first = x.begin() + static_cast<std::ptrdiff_t>(r * width + (shifted ? 1 : 0));
            want.insert(want.end(), first, first + width);
          }
          cpu::RmsNorm(want.data(), rows, width,
                       weighted ? std::span<const float>(w) : std::span<const float>(), 1e-6f);
          EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(got), want, width), 4e-3)
              << "variant " << variant;
          EXPECT_EQ(Bits(got), Bits(run())) << "variant " << variant << ": not deterministic";
        }
      }
    }
  });
}

// h1 = h + rms(a) ⊙ post_attn, then the FFN inputs and the fp32 router input, against the CPU
// ops; with the MoE outputs (x_moe, router_in) or without (as the vision encoder calls it).
void CheckPostAttention(int t, int H, bool moe, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "tokens " << t << " hidden " << H << " moe " << moe);
  const auto h = Normal(static_cast<size_t>(t) * H, 5.0f, rng), a = Normal(h.size(), 2.0f, rng);
  const auto w1 = Normal(H, 1.0f, rng), w2 = Normal(H, 1.0f, rng), w3 = Normal(H, 1.0f, rng);
  const auto rs = Normal(H, 1.0f, rng);
  DeviceArray<float> dh, da, d1, d2, d3, drs, router_in(h.size());
  da.Upload(a);
  d1.Upload(w1);
  d2.Upload(w2);
  d3.Upload(w3);
  drs.Upload(rs);
  DeviceArray<bf16> xd(h.size()), xm(h.size());
  auto run = [&] {
    dh.Upload(h);
    xd.Poison();
    xm.Poison();
    router_in.Poison();
    EXPECT_TRUE(cuda::LaunchPostAttention(dh.get(), da.get(), t, H, d1.get(), d2.get(),
                                          moe ? d3.get() : nullptr, moe ? drs.get() : nullptr,
                                          1e-6f, xd.get(), moe ? xm.get() : nullptr,
                                          moe ? router_in.get() : nullptr, nullptr)
                    .ok());
  };
  run();
  const auto got_h = dh.Download(), got_r = router_in.Download();
  const auto got_d = xd.Download(), got_m = xm.Download();
  std::vector<float> h1 = h, an = a;
  cpu::RmsNorm(an.data(), t, H, w1, 1e-6f);
  for (size_t i = 0; i < h1.size(); ++i) h1[i] += an[i];
  std::vector<float> wd = h1, wm = h1;
  cpu::RmsNorm(wd.data(), t, H, w2, 1e-6f);
  cpu::RmsNorm(wm.data(), t, H, w3, 1e-6f);
  EXPECT_LT(gputest::WorstRowRelL2(got_h, h1, H), 1e-6);
  EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(got_d), wd, H), 4e-3);
  if (moe) {
    EXPECT_LT(gputest::WorstRowRelL2(gputest::FromBf16(got_m), wm, H), 4e-3);
    // The router input stays fp32: rms(h1) ⊙ router_scale · H^-½.
    std::vector<float> wr = h1, rs_root(rs);
    for (float& v : rs_root) v /= std::sqrt(static_cast<float>(H));
    cpu::RmsNorm(wr.data(), t, H, rs_root, 1e-6f);
    EXPECT_LT(gputest::WorstRowRelL2(got_r, wr, H), 1e-6);
  } else {  // the outputs it was not given stay untouched
    for (uint16_t b : Bits(got_m)) ASSERT_EQ(b, 0xffff);
    for (uint32_t b : Bits(got_r)) ASSERT_EQ(b, 0xffffffffu);
  }
  run();
  EXPECT_EQ(Bits(dh.Download()), Bits(got_h)) << "not deterministic";
  EXPECT_EQ(Bits(xd.Download()), Bits(got_d)) << "not deterministic";
  EXPECT_EQ(Bits(xm.Download()), Bits(got_m)) << "not deterministic";
  EXPECT_EQ(Bits(router_in.Download()), Bits(got_r)) << "not deterministic";
}

TEST(Ops, PostAttentionResidualAndFfnNorms) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(2);
  ForBothRowForms([&](bool) {
    for (int H : {2816, 96, 64, 94, 10000}) {
      for (int t : kRowCounts) CheckPostAttention(t, H, true, rng);
    }
    for (int H : {2816, 94}) CheckPostAttention(3, H, false, rng);
  });
}

TEST(Ops, RowKernelsRejectBadArguments) {
  GS_REQUIRE_GPU();
  DeviceArray<float> f(64);
  DeviceArray<bf16> b(64);
  const auto rms = cuda::LaunchRmsNorm(f.get(), nullptr, 1, 0, nullptr, 1e-6f, b.get(), nullptr);
  ASSERT_FALSE(rms.ok());
  EXPECT_NE(rms.error().message.find("width"), std::string::npos) << rms.error().message;
  const auto post = cuda::LaunchPostAttention(f.get(), f.get(), 1, 64, f.get(), f.get(), nullptr,
                                              nullptr, 1e-6f, b.get(), b.get(), nullptr, nullptr);
  ASSERT_FALSE(post.ok());
  EXPECT_NE(post.error().message.find("pre_ffn_2"), std::string::npos) << post.error().message;
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
        const cuda::AttentionLayer layer = gputest::KvLayer(
            heads, kv, d, global ? 0 : window, block, fp8, o.kc.get(), o.vc.get(), o.ks.get(),
            o.vs.get());
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

TEST(Ops, Embed) {
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
}

// The greedy id the GPU must return: the largest value, lowest index on ties, NaN never chosen,
// 0 for a row without any non-NaN value.
int ReferenceArgmax(const float* row, int n) {
  int best = -1;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(row[i])) continue;
    if (best < 0 || row[i] > row[best]) best = i;
  }
  return best < 0 ? 0 : best;
}

// LaunchSoftcapArgmax with a freshly zeroed scratch (checked to be left zeroed).
struct SoftcapArgmaxRunner {
  DeviceArray<uint8_t> scratch;
  int rows = 0;
  explicit SoftcapArgmaxRunner(int r) : scratch(cuda::SoftcapArgmaxScratchBytes(r)), rows(r) {
    EXPECT_EQ(cudaMemset(scratch.get(), 0, scratch.size()), cudaSuccess);
  }
  std::vector<int> Run(float* logits, int vocab, float cap) {
    DeviceArray<int> ids(static_cast<size_t>(rows));
    ids.Poison();
    EXPECT_TRUE(cuda::LaunchSoftcapArgmax(logits, rows, vocab, cap, ids.get(), scratch.get(),
                                          scratch.size(), nullptr)
                    .ok());
    return ids.Download();
  }
  bool CountersZero() const {
    const auto bytes = scratch.Download();
    for (size_t i = 0; i < static_cast<size_t>(rows) * sizeof(int); ++i) {
      if (bytes[i] != 0) return false;
    }
    return true;
  }
};

// Random rows with planted features: a clear winner (row 0), a tie at many places spread over
// the row — across any chunking — (lowest wins), the last element, a tie created by the softcap
// (two huge values saturate to the cap), NaNs beside a winner, all NaN, all equal, all -inf.
// Row r gets feature (first_kind + r) % 8.
std::vector<float> ArgmaxRows(int rows, int vocab, int first_kind, std::mt19937_64& rng) {
  auto logits = Normal(static_cast<size_t>(rows) * vocab, 20.0f, rng);
  for (int r = 0; r < rows; ++r) {
    float* row = logits.data() + static_cast<size_t>(r) * vocab;
    const int n = vocab;
    switch ((first_kind + r) % 8) {
      case 0: row[(7 + 31 * r) % n] = 500.0f; break;
      case 1:
        for (int i = n - 1 - r % 5; i >= 0; i -= 1 + n / 7) row[i] = 900.0f;
        break;
      case 2: row[n - 1] = 1e4f; break;
      case 3:
        row[n / 2] = 2e4f;          // without the cap: this one
        row[n / 2 - n / 3] = 1e4f;  // with it: both are exactly the cap, the lower index wins
        break;
      case 4: {
        for (int i = 0; i < n; i += 3) row[i] = std::numeric_limits<float>::quiet_NaN();
        const int winner = (n - 1) % 3 != 0 ? n - 1 : n - 2;  // the last non-NaN place
        if (winner >= 0) row[winner] = 700.0f;
        break;
      }
      case 5:
        for (int i = 0; i < n; ++i) row[i] = std::numeric_limits<float>::quiet_NaN();
        break;
      case 6:
        for (int i = 0; i < n; ++i) row[i] = 3.0f;
        break;
      case 7:
        for (int i = 0; i < n; ++i) row[i] = -std::numeric_limits<float>::infinity();
        if (n > 2) row[n - 2] = std::numeric_limits<float>::quiet_NaN();
        break;
    }
  }
  return logits;
}

// The fused softcap + argmax against the elementwise LaunchSoftcap (bit-identical values), the
// CPU softcap (close) and the reference argmax of the softcapped values; without a cap (argmax
// only, logits untouched) too. Two runs are bit-identical and leave the scratch counters at 0.
void CheckSoftcapArgmax(int vocab, int rows, int first, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "vocab " << vocab << " rows " << rows << " first kind "
                                    << first);
  const auto logits = ArgmaxRows(rows, vocab, first, rng);
  SoftcapArgmaxRunner runner(rows);
  DeviceArray<float> fused, plain;
  for (float cap : {30.0f, 0.0f}) {
    SCOPED_TRACE(::testing::Message() << "cap " << cap);
    fused.Upload(logits);
    const auto ids = runner.Run(fused.get(), vocab, cap);
    const auto capped = fused.Download();
    if (cap > 0.0f) {
      plain.Upload(logits);
      GS_ASSERT_OK(
          cuda::LaunchSoftcap(plain.get(), static_cast<int64_t>(rows) * vocab, cap, nullptr));
      ASSERT_EQ(Bits(capped), Bits(plain.Download())) << "softcap differs from LaunchSoftcap";
      std::vector<float> want = logits;
      cpu::Softcap(want, cap);
      for (size_t i = 0; i < want.size(); ++i) {
        if (std::isnan(want[i])) {
          ASSERT_TRUE(std::isnan(capped[i])) << i;
        } else {
          ASSERT_NEAR(capped[i], want[i], 1e-5f * cap) << i;
        }
      }
    } else {
      ASSERT_EQ(Bits(capped), Bits(logits)) << "no cap: the logits must stay untouched";
    }
    for (int r = 0; r < rows; ++r) {
      ASSERT_EQ(ids[r], ReferenceArgmax(capped.data() + static_cast<size_t>(r) * vocab, vocab))
          << "row " << r;
    }
    // The planted rows' ids, known without any softcap arithmetic.
    for (int r = 0; r < rows && vocab >= 1000; ++r) {
      int want = -1;
      switch ((first + r) % 8) {
        case 2: want = vocab - 1; break;
        case 3: want = cap > 0.0f ? vocab / 2 - vocab / 3 : vocab / 2; break;
        case 5: case 6: case 7: want = 0; break;  // all NaN, all equal, all -inf
        default: continue;
      }
      EXPECT_EQ(ids[r], want) << "row " << r;
    }
    EXPECT_TRUE(runner.CountersZero());
    fused.Upload(logits);
    EXPECT_EQ(runner.Run(fused.get(), vocab, cap), ids) << "not deterministic";
    EXPECT_EQ(Bits(fused.Download()), Bits(capped)) << "not deterministic";
  }
}

// The real vocab and odd sizes, decode to prefill row counts; few rows again with other
// features, so that each row count meets all eight kinds of row.
TEST(Ops, SoftcapArgmaxMatchesSoftcapThenArgmax) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(4);
  for (int vocab : {262144, 1, 1000, 262143}) {
    for (int rows : {1, 3, 32, 129}) {
      for (int first = 0; first < 8; first += rows) CheckSoftcapArgmax(vocab, rows, first, rng);
    }
  }
}

// Captured in a CUDA graph and replayed: the same ids every replay (the counters reset).
TEST(Ops, SoftcapArgmaxReplaysInGraph) {
  GS_REQUIRE_GPU();
  std::mt19937_64 rng(14);
  const int rows = 3, vocab = 262144;
  const auto logits = ArgmaxRows(rows, vocab, 0, rng);
  DeviceArray<float> dl;
  dl.Upload(logits);
  SoftcapArgmaxRunner runner(rows);
  DeviceArray<int> ids(rows);
  ids.Poison();
  cudaStream_t stream = nullptr;
  GS_CUDA_ASSERT(cudaStreamCreate(&stream));  // blocking: ordered with Poison()'s memsets
  GS_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const auto st = cuda::LaunchSoftcapArgmax(dl.get(), rows, vocab, 0.0f, ids.get(),
                                            runner.scratch.get(), runner.scratch.size(), stream);
  cudaGraph_t graph = nullptr;
  GS_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  GS_ASSERT_OK(st);
  cudaGraphExec_t exec = nullptr;
  GS_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<int> want(rows);
  for (int r = 0; r < rows; ++r) {
    want[r] = ReferenceArgmax(logits.data() + static_cast<size_t>(r) * vocab, vocab);
  }
  for (int replay = 0; replay < 3; ++replay) {
    ids.Poison();
    GS_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
    GS_CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_EQ(ids.Download(), want) << "replay " << replay;
    EXPECT_TRUE(runner.CountersZero()) << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(Ops, SoftcapArgmaxRejectsBadArguments) {
  GS_REQUIRE_GPU();
  DeviceArray<float> dl(1000);
  DeviceArray<int> ids(4);
  DeviceArray<uint8_t> scratch(cuda::SoftcapArgmaxScratchBytes(4));
  const auto small = cuda::LaunchSoftcapArgmax(dl.get(), 4, 250, 30.0f, ids.get(), scratch.get(),
                                               cuda::SoftcapArgmaxScratchBytes(4) - 1, nullptr);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.error().message.find("scratch"), std::string::npos) << small.error().message;
  const auto none = cuda::LaunchSoftcapArgmax(dl.get(), 4, 250, 30.0f, ids.get(), nullptr, 0,
                                              nullptr);
  EXPECT_FALSE(none.ok());
  const auto vocab = cuda::LaunchSoftcapArgmax(dl.get(), 4, 0, 30.0f, ids.get(), scratch.get(),
                                               scratch.size(), nullptr);
  EXPECT_FALSE(vocab.ok());
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
