// attention.cu against the CPU runner's AttendAndCache at the real 26B-A4B shapes: sliding layers
// (16 q heads, 8 kv heads × 256, window 1024, ring cache) and global layers (2 kv heads × 512,
// paged cache through a shuffled block table); contexts 1, 1023, 1024, 1025 and 5000; chunks of
// 1..1100 tokens (longer than the window); several sequences per batch; with and without the
// flash-decoding split. Also checks what the K/V write leaves in the cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "gpu/gpu_test_util.h"
#include "runtime/cpu/cpu_attention.h"
#include "runtime/cuda/kernels.h"

namespace gs {
namespace {

using cuda::bf16;
using gputest::DeviceArray;

constexpr int kBlock = 16;

struct SeqSpec {
  int start, count;
};

struct Case {
  bool sliding;
  std::vector<SeqSpec> seqs;
  // Geometry: the real 26B-A4B (16 heads; sliding 8 × 256, window 1024; global 2 × 512) unless
  // small (the demo model: 4 heads; sliding 2 × 64, window 32; global 1 × 128).
  bool small = false;
};

void RunCase(const Case& c, int splits, uint64_t seed) {
  const int kHeads = c.small ? 4 : 16, kWindow = c.small ? 32 : 1024;
  const int d = c.small ? (c.sliding ? 64 : 128) : (c.sliding ? 256 : 512);
  const int kv = c.small ? (c.sliding ? 2 : 1) : (c.sliding ? 8 : 2), group = kHeads / kv;
  ModelConfig config;
  config.num_heads = kHeads;
  config.sliding_window = kWindow;
  LayerConfig lc;
  lc.kind = c.sliding ? LayerKind::kSliding : LayerKind::kGlobal;
  lc.num_kv_heads = kv;
  lc.head_dim = d;
  config.layers = {lc};
  const int S = static_cast<int>(c.seqs.size());
  std::mt19937_64 rng(seed);

  // Sequences, with block tables drawn from a shuffled pool.
  std::vector<BatchSequence> seqs;
  int total_blocks = 0, T = 0;
  for (const SeqSpec& s : c.seqs) total_blocks += (s.start + s.count + kBlock - 1) / kBlock;
  std::vector<int32_t> pool(static_cast<size_t>(total_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  size_t next_block = 0;
  for (int i = 0; i < S; ++i) {
    BatchSequence s;
    s.slot = S - 1 - i;  // slots out of order too
    s.first_token = T;
    s.num_tokens = c.seqs[i].count;
    s.start_position = c.seqs[i].start;
    const int blocks = (s.start_position + s.num_tokens + kBlock - 1) / kBlock;
    s.block_table.assign(pool.begin() + next_block, pool.begin() + next_block + blocks);
    next_block += blocks;
    T += s.num_tokens;
    seqs.push_back(std::move(s));
  }
  KvCacheSpec spec{S, kBlock, total_blocks};
  cpu::KvCache cache(config, spec);
  const size_t row = static_cast<size_t>(kv) * d;
  const size_t positions = c.sliding ? static_cast<size_t>(S) * kWindow : static_cast<size_t>(total_blocks) * kBlock;
  std::vector<float> gk(positions * row, 0.0f), gv(positions * row, 0.0f);
  auto cache_row = [&](const BatchSequence& s, int p) -> size_t {
    if (c.sliding) return static_cast<size_t>(s.slot) * kWindow + p % kWindow;
    return static_cast<size_t>(s.block_table[p / kBlock]) * kBlock + p % kBlock;
  };
  // The past: random K/V for the positions a query can still see.
  for (const BatchSequence& s : seqs) {
    for (int p = c.sliding ? std::max(0, s.start_position - kWindow) : 0; p < s.start_position; ++p) {
      const auto k = gputest::RandomBf16Values(row, 1.0f, rng), v = gputest::RandomBf16Values(row, 1.0f, rng);
      std::copy(k.begin(), k.end(), cache.Key(0, s, p));
      std::copy(v.begin(), v.end(), cache.Value(0, s, p));
      std::copy(k.begin(), k.end(), gk.begin() + cache_row(s, p) * row);
      std::copy(v.begin(), v.end(), gv.begin() + cache_row(s, p) * row);
    }
  }
  // Queries of moderate size so the softmax is neither flat nor one-hot.
  const auto q = gputest::RandomBf16Values(static_cast<size_t>(T) * kHeads * d, 0.08f, rng);
  const auto k = gputest::RandomBf16Values(static_cast<size_t>(T) * row, 1.0f, rng);
  const auto v = gputest::RandomBf16Values(k.size(), 1.0f, rng);

  // GPU metadata, laid out as the runner does.
  std::vector<int> seq_start, seq_first, seq_count, seq_slot, seq_table, tables, token_seq, pos;
  std::vector<int> tile_seq, tile_first, tile_count;
  const int tile = 16 / group;
  for (int i = 0; i < S; ++i) {
    const BatchSequence& s = seqs[i];
    seq_start.push_back(s.start_position);
    seq_first.push_back(s.first_token);
    seq_count.push_back(s.num_tokens);
    seq_slot.push_back(s.slot);
    seq_table.push_back(static_cast<int>(tables.size()));
    tables.insert(tables.end(), s.block_table.begin(), s.block_table.end());
    for (int j = 0; j < s.num_tokens; ++j) {
      token_seq.push_back(i);
      pos.push_back(s.start_position + j);
    }
    for (int j = 0; j < s.num_tokens; j += tile) {
      tile_seq.push_back(i);
      tile_first.push_back(s.first_token + j);
      tile_count.push_back(std::min(tile, s.num_tokens - j));
    }
  }
  DeviceArray<int> d_start, d_first, d_count, d_slot, d_table, d_tables, d_tseq, d_pos, d_tile_seq,
      d_tile_first, d_tile_count;
  d_start.Upload(seq_start);
  d_first.Upload(seq_first);
  d_count.Upload(seq_count);
  d_slot.Upload(seq_slot);
  d_table.Upload(seq_table);
  d_tables.Upload(tables);
  d_tseq.Upload(token_seq);
  d_pos.Upload(pos);
  d_tile_seq.Upload(tile_seq);
  d_tile_first.Upload(tile_first);
  d_tile_count.Upload(tile_count);
  cuda::AttentionMeta meta;
  meta.seq_start = d_start.get();
  meta.seq_first = d_first.get();
  meta.seq_count = d_count.get();
  meta.seq_slot = d_slot.get();
  meta.seq_table = d_table.get();
  meta.block_tables = d_tables.get();
  meta.token_seq = d_tseq.get();
  meta.positions = d_pos.get();
  meta.tile_seq = d_tile_seq.get();
  meta.tile_first = d_tile_first.get();
  meta.tile_count = d_tile_count.get();
  meta.num_tiles = static_cast<int>(tile_seq.size());

  DeviceArray<bf16> kc, vc, dq, dk, dv, out(static_cast<size_t>(T) * kHeads * d);
  kc.Upload(gputest::ToBf16(gk));
  vc.Upload(gputest::ToBf16(gv));
  dq.Upload(gputest::ToBf16(q));
  dk.Upload(gputest::ToBf16(k));
  dv.Upload(gputest::ToBf16(v));
  DeviceArray<float> partial(splits > 1 ? static_cast<size_t>(splits) * T * kHeads * (d + 2) : 1);
  out.Poison();
  partial.Poison();
  cuda::AttentionLayer layer{kHeads, kv, d, c.sliding ? kWindow : 0, kBlock, kc.get(), vc.get()};
  GS_ASSERT_OK(cuda::LaunchAttention(layer, meta, dq.get(), dk.get(), dv.get(), T, splits,
                                     splits > 1 ? partial.get() : nullptr, out.get(), nullptr));
  GS_ASSERT_OK(cuda::LaunchKvWrite(layer, meta, dk.get(), dv.get(), T, nullptr));
  const auto got = gputest::FromBf16(out.Download());

  std::vector<float> want(got.size());
  ThreadPool tp(0);
  for (const BatchSequence& s : seqs) {
    const size_t t0 = static_cast<size_t>(s.first_token);
    cpu::AttentionChunk chunk{&config.layers[0], 0, kHeads, kWindow, &s,
                              q.data() + t0 * kHeads * d, k.data() + t0 * row, v.data() + t0 * row};
    cpu::AttendAndCache(chunk, cache, want.data() + t0 * kHeads * d, tp);
  }
  const double err = gputest::WorstRowRelL2(got, want, d);
  EXPECT_LT(err, 1e-2) << (c.sliding ? "sliding" : "global") << " splits " << splits;

  // The cache after the write: every position a later query can see equals the CPU cache.
  const auto kc_after = gputest::FromBf16(kc.Download()), vc_after = gputest::FromBf16(vc.Download());
  int mismatches = 0;
  for (const BatchSequence& s : seqs) {
    const int end = s.start_position + s.num_tokens;
    for (int p = c.sliding ? std::max(0, end - kWindow) : 0; p < end; ++p) {
      const size_t r = cache_row(s, p) * row;
      mismatches += !std::equal(kc_after.begin() + r, kc_after.begin() + r + row, cache.Key(0, s, p));
      mismatches += !std::equal(vc_after.begin() + r, vc_after.begin() + r + row, cache.Value(0, s, p));
    }
  }
  EXPECT_EQ(mismatches, 0) << "K/V cache rows differ from the CPU cache after the write";
}

std::vector<Case> Cases(bool sliding) {
  std::vector<Case> out;
  // Single sequences: decode at contexts 1, 1023, 1024, 1025, 5000 and chunks of odd sizes.
  for (int context : {1, 1023, 1024, 1025, 5000}) out.push_back({sliding, {{context - 1, 1}}});
  out.push_back({sliding, {{0, 3}}});
  out.push_back({sliding, {{0, 17}}});
  out.push_back({sliding, {{1000, 64}}});
  out.push_back({sliding, {{1007, 17}}});
  out.push_back({sliding, {{5000 - 129, 129}}});
  if (sliding) {
    out.push_back({sliding, {{0, 1100}}});     // chunk longer than the window
    out.push_back({sliding, {{2000, 1100}}});  // ... with a full ring before it
  }
  // Several sequences in one batch: decode at different contexts, and mixed chunks.
  out.push_back({sliding, {{0, 1}, {1023, 1}, {4999, 1}}});
  out.push_back({sliding, {{1000, 17}, {0, 3}, {1030, 1}}});
  // The demo model's geometry (window 32), chunks shorter and longer than the window.
  for (SeqSpec s : {SeqSpec{0, 7}, SeqSpec{0, 33}, SeqSpec{0, 100}, SeqSpec{40, 1}, SeqSpec{40, 9}}) {
    out.push_back({sliding, {s}, true});
  }
  out.push_back({sliding, {{0, 5}, {0, 40}, {0, 1}}, true});
  return out;
}

class Attention : public ::testing::TestWithParam<bool> {};  // param: sliding

TEST_P(Attention, MatchesCpuReference) {
  GS_REQUIRE_GPU();
  uint64_t seed = 100;
  for (const Case& c : Cases(GetParam())) {
    for (int splits : {1, 4}) {
      SCOPED_TRACE(::testing::Message() << "first sequence start " << c.seqs[0].start << " count "
                                        << c.seqs[0].count << ", " << c.seqs.size()
                                        << " sequences, splits " << splits);
      RunCase(c, splits, seed++);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, Attention, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Sliding256" : "Global512"; });

}  // namespace
}  // namespace gs
