// The attention kernels (prefill and decode) against the CPU runner's AttendAndCache at the real
// 26B-A4B shapes: sliding layers (16 q heads, 8 kv heads × 256, window 1024, ring cache) and
// global layers (2 kv heads × 512, paged cache through a shuffled block table); contexts 1, 63,
// 64, 65, 1023, 1024, 1025 and 5000 (around the decode kernel's 64-key tiles and the window);
// chunks of 1..1100 tokens (longer than the window) continuing a cache; batches of 1, 3 and 32
// sequences; with and without the flash-decoding split (for decode up to 32 splits, merged in
// the kernel's last split block through counters that every launch must leave at zero: each
// decode launch is repeated at once, eagerly and as a CUDA graph replayed twice, and must give
// the same bits); BF16 and FP8 (e4m3) KV caches. The past is written by LaunchKvWrite, so the
// test also checks what the write leaves in the cache (bit-exact for bf16; for fp8 within e4m3
// rounding and amax/448 scales, and byte for byte the host quantizer of fp8_kv_layout.h: byte
// order and stored scales s · 2^120).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>

#include "gpu/gpu_test_util.h"
#include "model/config.h"
#include "runtime/cpu/cpu_attention.h"
#include "runtime/cuda/fp8_kv_layout.h"
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

// The step metadata of `seqs` on the device, laid out as the runner does, with query tiles of
// `tile` tokens.
struct DeviceMeta {
  DeviceArray<int> start, first, count, slot, table, tables, tseq, pos, tile_seq, tile_first,
      tile_count;
  cuda::AttentionMeta meta;

  DeviceMeta(const std::vector<BatchSequence>& seqs, int tile) {
    std::vector<int> v_start, v_first, v_count, v_slot, v_table, v_tables, v_tseq, v_pos, v_tseq2,
        v_tfirst, v_tcount;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const BatchSequence& s = seqs[i];
      v_start.push_back(s.start_position);
      v_first.push_back(s.first_token);
      v_count.push_back(s.num_tokens);
      v_slot.push_back(s.slot);
      v_table.push_back(static_cast<int>(v_tables.size()));
      v_tables.insert(v_tables.end(), s.block_table.begin(), s.block_table.end());
      for (int j = 0; j < s.num_tokens; ++j) {
        v_tseq.push_back(static_cast<int>(i));
        v_pos.push_back(s.start_position + j);
      }
      for (int j = 0; j < s.num_tokens; j += tile) {
        v_tseq2.push_back(static_cast<int>(i));
        v_tfirst.push_back(s.first_token + j);
        v_tcount.push_back(std::min(tile, s.num_tokens - j));
      }
    }
    if (v_tables.empty()) v_tables.push_back(0);
    start.Upload(v_start);
    first.Upload(v_first);
    count.Upload(v_count);
    slot.Upload(v_slot);
    table.Upload(v_table);
    tables.Upload(v_tables);
    tseq.Upload(v_tseq);
    pos.Upload(v_pos);
    tile_seq.Upload(v_tseq2);
    tile_first.Upload(v_tfirst);
    tile_count.Upload(v_tcount);
    meta.seq_start = start.get();
    meta.seq_first = first.get();
    meta.seq_count = count.get();
    meta.seq_slot = slot.get();
    meta.seq_table = table.get();
    meta.block_tables = tables.get();
    meta.token_seq = tseq.get();
    meta.positions = pos.get();
    meta.tile_seq = tile_seq.get();
    meta.tile_first = tile_first.get();
    meta.tile_count = tile_count.get();
    meta.num_tiles = static_cast<int>(v_tseq2.size());
    meta.tile_tokens = tile;
  }
};

// e4m3 round-to-nearest of x/s, dequantized: |x̂ − x| ≤ 2^-4·|x| for normal codes, and at
// most half the subnormal step (2^-10·s) below them; 2^-9·|x| slack covers 1/s rounding.
// `stored` is the cache's scale s · 2^120.
bool WithinE4m3(float got, float want, float stored) {
  const float s = fp8kv::RealScale(stored);
  return std::fabs(got - want) <= 0.0625f * std::fabs(want) + 0.002f * std::fabs(want) +
                                      std::ldexp(s, -10) * 1.01f;
}

enum class Kernel { kPrefill, kDecode };

// The decode kernel merges its splits in the last block of each (tile, kv head), found through
// counters that each launch must leave at zero. Runs `launch` (whose first result is `want`)
// twice more back to back (PDL lets the second start before the first ends), then as a graph
// captured on a stream and replayed twice: every result must have the same bits, and the
// counters must be zero after all of them.
void ExpectRepeatable(const std::function<Status(bf16* out, cudaStream_t stream)>& launch,
                      const std::vector<bf16>& want, const DeviceArray<int>& counters) {
  DeviceArray<bf16> again(want.size()), again2(want.size());
  again.Poison();
  again2.Poison();
  GS_ASSERT_OK(launch(again.get(), nullptr));
  GS_ASSERT_OK(launch(again2.get(), nullptr));  // right behind the other, no sync between
  for (const DeviceArray<bf16>* a : {&again, &again2}) {
    const auto host = a->Download();
    EXPECT_EQ(std::memcmp(host.data(), want.data(), want.size() * sizeof(bf16)), 0)
        << (a == &again ? "a second" : "a third") << " launch gave other bits than the first";
  }

  cudaStream_t stream = nullptr;
  GS_CUDA_ASSERT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  GS_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Status captured = launch(again.get(), stream);
  GS_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  GS_ASSERT_OK(captured);
  GS_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    GS_CUDA_ASSERT(cudaMemsetAsync(again.get(), 0xff, want.size() * sizeof(bf16), stream));
    GS_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
    GS_CUDA_ASSERT(cudaStreamSynchronize(stream));
    const auto replay_host = again.Download();
    EXPECT_EQ(std::memcmp(replay_host.data(), want.data(), want.size() * sizeof(bf16)), 0)
        << "graph replay " << replay << " gave other bits than the eager launch";
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  const auto left = counters.Download();
  EXPECT_EQ(std::count(left.begin(), left.end(), 0), static_cast<std::ptrdiff_t>(left.size()))
      << "split counters not left at zero";
}

// Block ids 0 .. count-1 in random order: block tables drawn from it are out of order.
std::vector<int32_t> ShuffledBlocks(int count, std::mt19937_64& rng) {
  std::vector<int32_t> pool(static_cast<size_t>(count));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  return pool;
}

// The past a query of `s` can still see (window 0: all of it), as one earlier chunk of the same
// sequence appended to *past at token *t_past (advanced), or nothing when there is none.
void AddPastChunk(const BatchSequence& s, int window, int* t_past,
                  std::vector<BatchSequence>* past) {
  const int p0 = window > 0 ? std::max(0, s.start_position - window) : 0;
  if (s.start_position <= p0) return;
  BatchSequence ps = s;
  ps.first_token = *t_past;
  ps.start_position = p0;
  ps.num_tokens = s.start_position - p0;
  *t_past += ps.num_tokens;
  past->push_back(ps);
}

// With fp8, appends each output row's relative L2 error against unquantized K/V to *fp8_rows.
void RunCase(const Case& c, int splits, Kernel kernel, bool fp8, uint64_t seed,
             std::vector<double>* fp8_rows) {
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
  std::vector<BatchSequence> seqs, past;
  int total_blocks = 0, T = 0, T_past = 0;
  for (const SeqSpec& s : c.seqs) total_blocks += (s.start + s.count + kBlock - 1) / kBlock;
  const std::vector<int32_t> pool = ShuffledBlocks(total_blocks, rng);
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
    AddPastChunk(s, c.sliding ? kWindow : 0, &T_past, &past);
    seqs.push_back(std::move(s));
  }
  KvCacheSpec spec{S, kBlock, total_blocks};
  cpu::KvCache cache(config, spec);   // what the kernel reads (fp8: the dequantized cache)
  cpu::KvCache exact(config, spec);   // fp8: the unquantized values
  const size_t row = static_cast<size_t>(kv) * d;
  const size_t positions = c.sliding ? static_cast<size_t>(S) * kWindow : static_cast<size_t>(total_blocks) * kBlock;
  const size_t elem = fp8 ? 1 : 2;
  auto cache_row = [&](const BatchSequence& s, int p) -> size_t {
    if (c.sliding) return static_cast<size_t>(s.slot) * kWindow + p % kWindow;
    return static_cast<size_t>(s.block_table[p / kBlock]) * kBlock + p % kBlock;
  };
  // Unwritten cache bytes are 0xFF (NaN in bf16 and e4m3): a kernel reading them fails.
  DeviceArray<uint8_t> kc(positions * row * elem), vc(positions * row * elem);
  DeviceArray<float> ksc(fp8 ? positions * kv : 1), vsc(fp8 ? positions * kv : 1);
  kc.Poison();
  vc.Poison();
  ksc.Poison();
  vsc.Poison();
  const cuda::AttentionLayer layer = gputest::KvLayer(kHeads, kv, d, c.sliding ? kWindow : 0,
                                                      kBlock, fp8, kc.get(), vc.get(), ksc.get(),
                                                      vsc.get());

  // The past: random K/V written by the KV write kernel as an earlier chunk.
  const auto pk = gputest::RandomBf16Values(static_cast<size_t>(T_past) * row, 1.0f, rng);
  const auto pv = gputest::RandomBf16Values(pk.size(), 1.0f, rng);
  if (T_past > 0) {
    DeviceArray<bf16> dpk, dpv;
    dpk.Upload(gputest::ToBf16(pk));
    dpv.Upload(gputest::ToBf16(pv));
    DeviceMeta pm(past, 1);
    GS_ASSERT_OK(cuda::LaunchKvWrite(layer, pm.meta, dpk.get(), dpv.get(), T_past, nullptr));
  }
  const auto kc_bytes = kc.Download(), vc_bytes = vc.Download();
  const auto ksc_host = ksc.Download(), vsc_host = vsc.Download();
  // Element i of cache row r (bf16, or e4m3 · the row's scale in the fp8 layout).
  auto read = [&](const std::vector<uint8_t>& bytes, const std::vector<float>& scales, size_t r,
                  size_t i) -> float {
    if (!fp8) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + (r * row + i) * 2, 2);
      return Bf16ToFloat(b);
    }
    const size_t h = i / d;
    return fp8kv::DequantizeHost(bytes.data() + r * row + h * d, scales[r * kv + h],
                                 static_cast<int>(i % d));
  };
  // FP8: head h of cache row r holds the host quantizer's codes and stored scale of x[at, at + d).
  std::vector<uint8_t> host_codes(static_cast<size_t>(d));
  auto same_as_host = [&](const std::vector<float>& x, const std::vector<uint8_t>& bytes,
                          const std::vector<float>& scales, size_t at, size_t r, int h) {
    const float stored = fp8kv::QuantizeRowHost(x.data() + at, d, host_codes.data());
    return stored == scales[r * kv + h] &&
           std::memcmp(host_codes.data(), bytes.data() + r * row + h * d, d) == 0;
  };
  int bad_past = 0, bad_bytes = 0;
  for (const BatchSequence& ps : past) {
    const BatchSequence& s = seqs[static_cast<size_t>(std::find_if(seqs.begin(), seqs.end(),
        [&](const BatchSequence& x) { return x.slot == ps.slot; }) - seqs.begin())];
    for (int j = 0; j < ps.num_tokens; ++j) {
      const int p = ps.start_position + j;
      const size_t r = cache_row(s, p), src = static_cast<size_t>(ps.first_token + j) * row;
      float* ck = cache.Key(0, s, p);
      float* cv = cache.Value(0, s, p);
      for (size_t i = 0; i < row; ++i) {
        ck[i] = read(kc_bytes, ksc_host, r, i);
        cv[i] = read(vc_bytes, vsc_host, r, i);
        const float sk = fp8 ? ksc_host[r * kv + i / d] : 0.0f, sv = fp8 ? vsc_host[r * kv + i / d] : 0.0f;
        bad_past += fp8 ? !WithinE4m3(ck[i], pk[src + i], sk) + !WithinE4m3(cv[i], pv[src + i], sv)
                        : (ck[i] != pk[src + i]) + (cv[i] != pv[src + i]);
      }
      for (int h = 0; h < kv && fp8; ++h) {  // the host twin's bytes and scales, exactly
        const size_t at = src + static_cast<size_t>(h) * d;
        bad_bytes += !same_as_host(pk, kc_bytes, ksc_host, at, r, h) +
                     !same_as_host(pv, vc_bytes, vsc_host, at, r, h);
      }
      std::copy(pk.begin() + src, pk.begin() + src + row, exact.Key(0, s, p));
      std::copy(pv.begin() + src, pv.begin() + src + row, exact.Value(0, s, p));
    }
  }
  EXPECT_EQ(bad_past, 0) << "cache elements of the past outside the " << (fp8 ? "e4m3" : "exact")
                         << " bound after LaunchKvWrite";
  EXPECT_EQ(bad_bytes, 0) << "FP8 cache rows (codes or stored scales) differ from "
                             "fp8kv::QuantizeRowHost";
  if (fp8) {  // real scale = the row's amax / 448 (stored × 2^-120)
    int bad_scale = 0;
    for (const BatchSequence& ps : past) {
      const BatchSequence& s = *std::find_if(seqs.begin(), seqs.end(),
          [&](const BatchSequence& x) { return x.slot == ps.slot; });
      for (int j = 0; j < ps.num_tokens; ++j) {
        for (int h = 0; h < kv; ++h) {
          const size_t src = static_cast<size_t>(ps.first_token + j) * row + static_cast<size_t>(h) * d;
          float amax = 0;
          for (int i = 0; i < d; ++i) amax = std::max(amax, std::fabs(pk[src + i]));
          const float got =
              fp8kv::RealScale(ksc_host[cache_row(s, ps.start_position + j) * kv + h]);
          bad_scale += !(std::fabs(got - amax / 448.0f) <= 1e-6f * amax);
        }
      }
    }
    EXPECT_EQ(bad_scale, 0) << "K scales differ from amax / 448";
  }

  // Queries of moderate size so the softmax is neither flat nor one-hot.
  const auto q = gputest::RandomBf16Values(static_cast<size_t>(T) * kHeads * d, 0.08f, rng);
  const auto k = gputest::RandomBf16Values(static_cast<size_t>(T) * row, 1.0f, rng);
  const auto v = gputest::RandomBf16Values(k.size(), 1.0f, rng);
  DeviceMeta dm(seqs, cuda::AttentionTileTokens(group, kernel == Kernel::kDecode));
  DeviceArray<bf16> dq, dk, dv, out(static_cast<size_t>(T) * kHeads * d);
  dq.Upload(gputest::ToBf16(q));
  dk.Upload(gputest::ToBf16(k));
  dv.Upload(gputest::ToBf16(v));
  DeviceArray<float> partial(
      std::max<size_t>(1, cuda::AttentionPartialFloats(layer, dm.meta, T, splits)));
  DeviceArray<int> counters(static_cast<size_t>(dm.meta.num_tiles) * kv);
  GS_CUDA_ASSERT(cudaMemset(counters.get(), 0, counters.size() * sizeof(int)));
  out.Poison();
  partial.Poison();
  auto launch = [&](bf16* dst, cudaStream_t stream) {
    return cuda::LaunchAttention(layer, dm.meta, dq.get(), dk.get(), dv.get(), T, splits,
                                 splits > 1 ? partial.get() : nullptr, counters.get(), dst,
                                 stream);
  };
  GS_ASSERT_OK(launch(out.get(), nullptr));
  const auto got_bf16 = out.Download();
  if (kernel == Kernel::kDecode) ExpectRepeatable(launch, got_bf16, counters);
  // First chunks (every sequence at position 0) read no key from the cache: told so
  // (keys_all_new), the prefill kernel skips the FP8 staging and must give the same bits.
  if (kernel == Kernel::kPrefill &&
      std::all_of(seqs.begin(), seqs.end(), [](const BatchSequence& s) { return s.start_position == 0; })) {
    cuda::AttentionMeta all_new = dm.meta;
    all_new.keys_all_new = true;
    DeviceArray<bf16> again(out.size());
    again.Poison();
    GS_ASSERT_OK(cuda::LaunchAttention(layer, all_new, dq.get(), dk.get(), dv.get(), T, splits,
                                       splits > 1 ? partial.get() : nullptr, counters.get(),
                                       again.get(), nullptr));
    const auto host = again.Download();
    EXPECT_EQ(std::memcmp(host.data(), got_bf16.data(), host.size() * sizeof(bf16)), 0)
        << "keys_all_new changed the prefill output";
  }
  GS_ASSERT_OK(cuda::LaunchKvWrite(layer, dm.meta, dk.get(), dv.get(), T, nullptr));
  const auto got = gputest::FromBf16(got_bf16);

  std::vector<float> want(got.size()), want_exact(got.size());
  ThreadPool tp(0);
  for (const BatchSequence& s : seqs) {
    const size_t t0 = static_cast<size_t>(s.first_token);
    cpu::AttentionChunk chunk{&config.layers[0], 0, kHeads, kWindow, &s,
                              q.data() + t0 * kHeads * d, k.data() + t0 * row, v.data() + t0 * row};
    cpu::AttendAndCache(chunk, cache, want.data() + t0 * kHeads * d, tp);
    if (fp8) cpu::AttendAndCache(chunk, exact, want_exact.data() + t0 * kHeads * d, tp);
  }
  // `want` reads exactly the values the kernel reads (fp8: the dequantized cache), so the only
  // errors are the output's bf16 rounding (≤ 2^-9 relative per element, hence per row) and
  // fp32 summation order (~1e-6): P·V runs with P as hi + lo bf16 terms (~16 bits; bf16 P
  // alone added up to another 2^-9). 3e-3 = 2^-9 plus half of it for slack.
  const double err = gputest::WorstRowRelL2(got, want, d);
  EXPECT_LT(err, 3e-3) << (c.sliding ? "sliding" : "global") << " splits " << splits;
  if (fp8) {
    for (size_t r = 0; r * d < got.size(); ++r) {
      fp8_rows->push_back(gputest::RelL2(got.data() + r * d, want_exact.data() + r * d, d));
    }
  }

  // The cache after the write: every position a later query can see equals the CPU cache
  // (fp8: within the e4m3 bound of it).
  const auto kc_after = kc.Download(), vc_after = vc.Download();
  const auto ksc_after = ksc.Download(), vsc_after = vsc.Download();
  int mismatches = 0;
  for (const BatchSequence& s : seqs) {
    const int end = s.start_position + s.num_tokens;
    for (int p = std::max(s.start_position, c.sliding ? std::max(0, end - kWindow) : 0); p < end; ++p) {
      const size_t r = cache_row(s, p);
      const float* wk = cache.Key(0, s, p);
      const float* wv = cache.Value(0, s, p);
      for (size_t i = 0; i < row; ++i) {
        const float gk = read(kc_after, ksc_after, r, i), gv = read(vc_after, vsc_after, r, i);
        if (fp8) {
          mismatches += !WithinE4m3(gk, wk[i], ksc_after[r * kv + i / d]) +
                        !WithinE4m3(gv, wv[i], vsc_after[r * kv + i / d]);
        } else {
          mismatches += (gk != wk[i]) + (gv != wv[i]);
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << "K/V cache elements differ from the CPU cache after the write";
}

// Decode contexts: around the decode kernel's 64-key tiles, the window, and long.
constexpr int kContexts[] = {1, 63, 64, 65, 1023, 1024, 1025, 5000};

std::vector<Case> Cases(bool sliding) {
  std::vector<Case> out;
  // Single sequences: decode at each context, and chunks of odd sizes.
  for (int context : kContexts) out.push_back({sliding, {{context - 1, 1}}});
  out.push_back({sliding, {{0, 3}}});
  out.push_back({sliding, {{1020, 3}}});  // ≤ 4 tokens: the decode kernel's tile on sliding
  out.push_back({sliding, {{0, 17}}});
  out.push_back({sliding, {{1000, 64}}});
  out.push_back({sliding, {{1007, 17}}});
  out.push_back({sliding, {{5000 - 129, 129}}});
  if (sliding) {
    out.push_back({sliding, {{0, 1100}}});     // chunk longer than the window
    out.push_back({sliding, {{2000, 1100}}});  // ... with a full ring before it
  }
  // Several sequences in one batch: decode at different contexts (3 and 32 sequences), and mixed
  // chunks.
  out.push_back({sliding, {{0, 1}, {1023, 1}, {4999, 1}}});
  out.push_back({sliding, {{62, 1}, {63, 1}, {64, 1}}});
  // 32 sequences over the contexts up to 1025 (5000 is covered above: its CPU reference for 32
  // sequences would dominate the suite's time on the GPU machine).
  Case b32{sliding, {}};
  for (int i = 0; i < 32; ++i) b32.seqs.push_back({kContexts[(i * 3) % 7] - 1, 1});
  out.push_back(b32);
  out.push_back({sliding, {{1000, 17}, {0, 3}, {1030, 1}}});
  // The demo model's geometry (window 32), chunks shorter and longer than the window.
  for (SeqSpec s : {SeqSpec{0, 7}, SeqSpec{0, 33}, SeqSpec{0, 100}, SeqSpec{40, 1}, SeqSpec{40, 9}}) {
    out.push_back({sliding, {s}, true});
  }
  out.push_back({sliding, {{0, 5}, {0, 40}, {0, 1}}, true});
  return out;
}

// FP8 KV against unquantized K/V is a property of e4m3, not of the kernels (those are held to
// the dequantized reference above), so it is checked as a statistic. First order, a row's
// relative error is √(ε_v² + ε_k²·σ_s²): ε = the RMS relative rounding error of e4m3 on
// amax/448-scaled N(0, 1) rows (0.026, simulated independently in Python), V's errors mixing
// with the weights p, K's shifting each score by ε·|q|·rms(k) = ε·σ_s, where σ_s = 0.08·√d is
// the score spread of these inputs (1.81 at d 512), which moves p by that relative amount. So
// ≈ 0.054 for global rows and 0.042 for sliding ones (simulated: median 0.052 at d 512). A row
// whose softmax is shared by two or three keys reaches ~2.5× that (measured: 0.126), so the
// worst row is only printed; the median must stay within 1.25× the prediction. Rows with
// keys from the current chunk (exact) or few keys fall below it.
void ExpectFp8ErrorAsPredicted(std::vector<double> rows, int d) {
  ASSERT_FALSE(rows.empty());
  for (double& e : rows) e = std::isnan(e) ? INFINITY : e;  // NaN fails; keep the sort defined
  std::sort(rows.begin(), rows.end());
  const double median = rows[rows.size() / 2], p99 = rows[rows.size() * 99 / 100];
  const double eps = 0.026, sigma = 0.08 * std::sqrt(static_cast<double>(d));
  const double predicted = eps * std::sqrt(1.0 + sigma * sigma);
  std::printf("FP8 KV against unquantized K/V, row relative L2 over %zu rows: median %.4f "
              "(predicted %.4f), 99%% %.4f, worst %.4f\n",
              rows.size(), median, predicted, p99, rows.back());
  EXPECT_LE(median, 1.25 * predicted) << "FP8 KV error against unquantized K/V";
  EXPECT_TRUE(std::isfinite(rows.back())) << "NaN or infinity in an FP8 KV output row";
}

struct Param {
  bool sliding, fp8;
};

class Attention : public ::testing::TestWithParam<Param> {};

// Every case through the prefill kernel, and through the decode kernel where its tiles fit
// (≤ 8 query rows: the runner's choice), each with and without the flash-decoding split (decode:
// 3 splits, uneven over the key tiles, and 32, the most the runner uses).
TEST_P(Attention, MatchesCpuReference) {
  GS_REQUIRE_GPU();
  const Param param = GetParam();
  uint64_t seed = 100;
  std::vector<double> fp8_rows;
  for (const Case& c : Cases(param.sliding)) {
    const int group = c.small ? (param.sliding ? 2 : 4) : (param.sliding ? 2 : 8);
    int longest = 0;
    for (const SeqSpec& s : c.seqs) longest = std::max(longest, s.count);
    for (Kernel kernel : {Kernel::kPrefill, Kernel::kDecode}) {
      if (kernel == Kernel::kDecode && longest > cuda::AttentionTileTokens(group, true)) continue;
      const std::vector<int> split_counts =
          kernel == Kernel::kDecode ? std::vector<int>{1, 3, 32} : std::vector<int>{1, 4};
      for (int splits : split_counts) {
        SCOPED_TRACE(::testing::Message()
                     << "first sequence start " << c.seqs[0].start << " count " << c.seqs[0].count
                     << ", " << c.seqs.size() << " sequences, splits " << splits << ", "
                     << (kernel == Kernel::kDecode ? "decode" : "prefill") << " kernel"
                     << (c.small ? ", small geometry" : ""));
        RunCase(c, splits, kernel, param.fp8, seed++, &fp8_rows);
      }
    }
  }
  if (param.fp8) ExpectFp8ErrorAsPredicted(fp8_rows, param.sliding ? 256 : 512);
}

INSTANTIATE_TEST_SUITE_P(Layers, Attention,
                         ::testing::Values(Param{true, false}, Param{false, false},
                                           Param{true, true}, Param{false, true}),
                         [](const auto& info) {
                           return std::string(info.param.sliding ? "Sliding256" : "Global512") +
                                  (info.param.fp8 ? "Fp8Kv" : "Bf16Kv");
                         });

// ---- The fused decode attention against the two-kernel decode path ----

// LaunchDecodeAttentionFused (qk-norm/RoPE, KV append and attention in one kernel) must give
// the bits of LaunchQkvNormRopeKv followed by LaunchAttention (both checked against the CPU: the
// QkvNormRope tests in ops_test, the attention above): the same attention output and the same
// cache bytes and FP8 scales afterwards, from the same cache before. Decode steps of 1, 3 and 32
// sequences (one new token each) at contexts around the 64-key tiles and the window, and past
// 105615 (sincosf's slow argument reduction: sliding only, whose past is just the window);
// splits 1, 3 and 32; every output poisoned. The fused launch is then repeated, eagerly and as a
// replayed graph (it rewrites the same cache rows), and must keep its bits and leave the split
// counters at zero.
void RunFusedCase(bool sliding, bool fp8, const std::vector<int>& contexts, int splits,
                  uint64_t seed) {
  const int heads = 16, window = 1024;
  const int d = sliding ? 256 : 512, kv = sliding ? 8 : 2, group = heads / kv;
  const bool k_eq_v = !sliding;
  RopeConfig rope;
  if (!sliding) {
    rope.type = RopeType::kProportional;
    rope.theta = 1e6;
    rope.partial_rotary_factor = 0.25;
  }
  const auto inv_freq = rope.InverseFrequencies(d);
  std::mt19937_64 rng(seed);
  const int S = static_cast<int>(contexts.size());

  std::vector<BatchSequence> seqs, past;
  int total_blocks = 0, T_past = 0;
  for (int c : contexts) total_blocks += (c + kBlock - 1) / kBlock;
  const std::vector<int32_t> pool = ShuffledBlocks(total_blocks, rng);
  size_t next_block = 0;
  for (int i = 0; i < S; ++i) {
    BatchSequence s;
    s.slot = S - 1 - i;
    s.first_token = i;
    s.num_tokens = 1;
    s.start_position = contexts[static_cast<size_t>(i)] - 1;
    const int blocks = (s.start_position + 1 + kBlock - 1) / kBlock;
    s.block_table.assign(pool.begin() + next_block, pool.begin() + next_block + blocks);
    next_block += blocks;
    AddPastChunk(s, sliding ? window : 0, &T_past, &past);
    seqs.push_back(std::move(s));
  }
  const size_t row = static_cast<size_t>(kv) * d;
  const size_t positions = sliding ? static_cast<size_t>(S) * window
                                   : static_cast<size_t>(total_blocks) * kBlock;
  const size_t cache_bytes = positions * row * (fp8 ? 1 : 2);
  struct Cache {
    DeviceArray<uint8_t> k, v;
    DeviceArray<float> ks, vs;
  };
  auto layer_of = [&](const Cache& c) {
    return gputest::KvLayer(heads, kv, d, sliding ? window : 0, kBlock, fp8, c.k.get(), c.v.get(),
                            c.ks.get(), c.vs.get());
  };
  // The cache before the step: poison (0xFF: NaN), then the past written by LaunchKvWrite.
  Cache before;
  before.k.Resize(cache_bytes);
  before.v.Resize(cache_bytes);
  before.ks.Resize(fp8 ? positions * kv : 1);
  before.vs.Resize(fp8 ? positions * kv : 1);
  for (auto* a : {&before.k, &before.v}) a->Poison();
  for (auto* a : {&before.ks, &before.vs}) a->Poison();
  if (T_past > 0) {
    DeviceArray<bf16> pk, pv;
    pk.Upload(gputest::ToBf16(gputest::RandomBf16Values(static_cast<size_t>(T_past) * row, 1.0f, rng)));
    pv.Upload(gputest::ToBf16(gputest::RandomBf16Values(static_cast<size_t>(T_past) * row, 1.0f, rng)));
    DeviceMeta pm(past, 1);
    GS_ASSERT_OK(cuda::LaunchKvWrite(layer_of(before), pm.meta, pk.get(), pv.get(), T_past, nullptr));
  }
  const auto k0 = before.k.Download(), v0 = before.v.Download();
  const auto ks0 = before.ks.Download(), vs0 = before.vs.Download();
  auto fresh_copy = [&](Cache& c) {
    c.k.Upload(k0);
    c.v.Upload(v0);
    c.ks.Upload(ks0);
    c.vs.Upload(vs0);
  };

  // The step's projection and weights: q_norm small enough that the softmax is not one-hot.
  const int cols = (heads + (k_eq_v ? 1 : 2) * kv) * d;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv(static_cast<size_t>(S) * cols), qn(d), kn(d);
  for (float& x : qkv) x = 2.0f * normal(rng);
  for (float& x : qn) x = 0.15f * normal(rng);
  for (float& x : kn) x = normal(rng);
  DeviceArray<float> dqkv, dqn, dkn, dinv;
  dqkv.Upload(qkv);
  dqn.Upload(qn);
  dkn.Upload(kn);
  dinv.Upload(inv_freq);
  DeviceMeta dm(seqs, cuda::AttentionTileTokens(group, true));
  const size_t out_elems = static_cast<size_t>(S) * heads * d;
  DeviceArray<int> counters(static_cast<size_t>(dm.meta.num_tiles) * kv);
  GS_CUDA_ASSERT(cudaMemset(counters.get(), 0, counters.size() * sizeof(int)));

  // The two-kernel path.
  Cache two;
  fresh_copy(two);
  DeviceArray<bf16> q(out_elems), k(static_cast<size_t>(S) * row), v(static_cast<size_t>(S) * row),
      want(out_elems);
  for (auto* a : {&q, &k, &v, &want}) a->Poison();
  DeviceArray<float> partial(std::max<size_t>(
      1, cuda::AttentionPartialFloats(layer_of(two), dm.meta, S, splits)));
  partial.Poison();
  GS_ASSERT_OK(cuda::LaunchQkvNormRopeKv(dqkv.get(), S, heads, k_eq_v, dqn.get(), dkn.get(),
                                         dinv.get(), 1e-6f, layer_of(two), dm.meta, q.get(),
                                         k.get(), v.get(), nullptr));
  GS_ASSERT_OK(cuda::LaunchAttention(layer_of(two), dm.meta, q.get(), k.get(), v.get(), S, splits,
                                     splits > 1 ? partial.get() : nullptr, counters.get(),
                                     want.get(), nullptr));
  const auto want_host = want.Download();

  // The fused kernel.
  Cache one;
  fresh_copy(one);
  DeviceArray<bf16> got(out_elems);
  got.Poison();
  partial.Poison();
  cuda::QkvNormRopeSource src;
  src.qkv = dqkv.get();
  src.k_eq_v = k_eq_v;
  src.q_norm = dqn.get();
  src.k_norm = dkn.get();
  src.inv_freq = dinv.get();
  src.eps = 1e-6f;
  auto launch = [&](bf16* dst, cudaStream_t stream) {
    return cuda::LaunchDecodeAttentionFused(src, layer_of(one), dm.meta, S, splits,
                                            splits > 1 ? partial.get() : nullptr, counters.get(),
                                            dst, stream);
  };
  GS_ASSERT_OK(launch(got.get(), nullptr));
  const auto got_host = got.Download();

  auto bits = [](const std::vector<bf16>& a) {
    std::vector<uint16_t> out;
    for (const bf16& x : a) out.push_back(__nv_bfloat16_raw(x).x);
    return out;
  };
  int nan_out = 0;
  for (float x : gputest::FromBf16(want_host)) nan_out += std::isnan(x);
  EXPECT_EQ(nan_out, 0) << "the two-kernel path left outputs unwritten (poison)";
  EXPECT_EQ(bits(got_host), bits(want_host)) << "attention output";
  const auto kc = one.k.Download(), vc = one.v.Download();
  EXPECT_EQ(kc, two.k.Download()) << "K cache bytes";
  EXPECT_EQ(vc, two.v.Download()) << "V cache bytes";
  if (fp8) {
    const auto ks = one.ks.Download(), vs = one.vs.Download();
    const auto wks = two.ks.Download(), wvs = two.vs.Download();
    EXPECT_EQ(0, std::memcmp(ks.data(), wks.data(), ks.size() * sizeof(float))) << "K scales";
    EXPECT_EQ(0, std::memcmp(vs.data(), wvs.data(), vs.size() * sizeof(float))) << "V scales";
  }
  // The step's rows were written (the poison of the cache before is gone there).
  int unwritten = 0;
  for (const BatchSequence& s : seqs) {
    const int p = s.start_position;
    const size_t r = sliding ? static_cast<size_t>(s.slot) * window + p % window
                             : static_cast<size_t>(s.block_table[p / kBlock]) * kBlock + p % kBlock;
    const size_t at = r * row * (fp8 ? 1 : 2), n = row * (fp8 ? 1 : 2);
    unwritten += std::count(kc.begin() + at, kc.begin() + at + n, uint8_t{0xff}) == static_cast<std::ptrdiff_t>(n);
    unwritten += std::count(vc.begin() + at, vc.begin() + at + n, uint8_t{0xff}) == static_cast<std::ptrdiff_t>(n);
  }
  EXPECT_EQ(unwritten, 0) << "rows of the step's tokens not appended to the cache";
  ExpectRepeatable(launch, got_host, counters);
  // The repeats rewrote the same rows: the cache is unchanged.
  EXPECT_EQ(one.k.Download(), kc) << "K cache after the repeated launches";
  EXPECT_EQ(one.v.Download(), vc) << "V cache after the repeated launches";
}

class AttentionFused : public ::testing::TestWithParam<Param> {};

TEST_P(AttentionFused, DecodeEqualsQkvNormRopeKvThenAttention) {
  GS_REQUIRE_GPU();
  const Param param = GetParam();
  std::vector<std::vector<int>> batches;
  std::vector<int> singles = {1, 64, 65, 1025};
  singles.push_back(param.sliding ? 200001 : 5000);
  for (int c : singles) batches.push_back({c});
  batches.push_back({1, 65, 1025});
  std::vector<int> b32;
  for (int i = 0; i < 32; ++i) b32.push_back(singles[static_cast<size_t>(i * 3) % singles.size()] + i % 2);
  batches.push_back(b32);
  uint64_t seed = 500;
  for (const auto& contexts : batches) {
    for (int splits : {1, 3, 32}) {
      SCOPED_TRACE(::testing::Message() << contexts.size() << " sequences, first context "
                                        << contexts[0] << ", splits " << splits);
      RunFusedCase(param.sliding, param.fp8, contexts, splits, seed++);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(AttentionFusedArgs, RejectsPrefillTiles) {
  GS_REQUIRE_GPU();
  cuda::AttentionLayer layer;
  layer.heads = 16;
  layer.kv_heads = 8;
  layer.head_dim = 256;
  cuda::AttentionMeta meta;
  meta.num_tiles = 1;
  meta.tile_tokens = cuda::AttentionTileTokens(2, false);
  DeviceArray<float> qkv(64), inv(128);
  cuda::QkvNormRopeSource src;
  src.qkv = qkv.get();
  src.inv_freq = inv.get();
  const Status st = cuda::LaunchDecodeAttentionFused(src, layer, meta, 1, 1, nullptr, nullptr,
                                                     nullptr, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("tile_tokens"), std::string::npos) << st.error().message;
}

INSTANTIATE_TEST_SUITE_P(Layers, AttentionFused,
                         ::testing::Values(Param{true, false}, Param{false, false},
                                           Param{true, true}, Param{false, true}),
                         [](const auto& info) {
                           return std::string(info.param.sliding ? "Sliding256" : "Global512") +
                                  (info.param.fp8 ? "Fp8Kv" : "Bf16Kv");
                         });

}  // namespace
}  // namespace gs
