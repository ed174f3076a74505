// Prefix caching with sliding-window layers: shared prefixes are served from cached global blocks
// plus a snapshot of the sliding state (counted as hits), and every result equals the one computed
// without caching and the single-request oracle.
#include "engine_test_util.h"

namespace gs {
namespace {

using test::DemoModel;
using test::ReadAll;

struct Served {
  std::vector<int32_t> tokens;
  int cached = 0;
};

class PrefixCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> Make(bool caching, int snapshot_interval = 0, int snapshots = 8,
                               int blocks = 64) {
    EngineConfig config;
    config.max_num_seqs = 6;
    config.max_num_batched_tokens = 48;
    config.enable_prefix_caching = caching;
    config.prefix_snapshot_interval = snapshot_interval;
    runners_.push_back(DemoModel::Get().Runner(EngineKvSpec(config, blocks, snapshots)));
    auto e = Engine::Create(*runners_.back(), config);
    EXPECT_TRUE(e.ok()) << e.error().message;
    return std::move(*e);
  }

  // Submits all requests at once and returns sequence 0 of each.
  std::vector<Served> Serve(Engine& engine, const std::vector<Request>& requests) {
    std::vector<RequestHandle> handles;
    for (const Request& r : requests) {
      auto h = engine.Submit(r);
      EXPECT_TRUE(h.ok()) << h.error().message;
      handles.push_back(*h);
    }
    std::vector<Served> out;
    for (auto& h : handles) {
      auto got = ReadAll(h, 1);
      out.push_back({got[0].tokens, got[0].last().num_cached_prompt_tokens});
    }
    return out;
  }

  std::vector<std::unique_ptr<CpuRunner>> runners_;
  std::mt19937 rng_{17};
  const int vocab_ = DemoModel::Get().config().vocab_size;
};

// Requests sharing a 70-token system prompt: with snapshots every 32 tokens, later requests reuse
// the first 64 positions (the last snapshot point inside the shared part).
TEST_F(PrefixCacheTest, SharedSystemPromptIsReusedAndResultsAreUnchanged) {
  const std::vector<int32_t> system = test::RandomPrompt(rng_, 70, vocab_);
  std::vector<Request> requests;
  std::uniform_int_distribution<int> suffix_len(5, 30);
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt = system;
    auto suffix = test::RandomPrompt(rng_, suffix_len(rng_), vocab_);
    prompt.insert(prompt.end(), suffix.begin(), suffix.end());
    requests.push_back(test::Greedy(prompt, 8));
    requests.back().ignore_eos = true;
  }
  auto cached = Make(true, 32);
  auto plain = Make(false);
  // The first request alone fills the cache; the rest run concurrently.
  std::vector<Served> with = Serve(*cached, {requests[0]});
  auto rest = Serve(*cached, std::vector<Request>(requests.begin() + 1, requests.end()));
  with.insert(with.end(), rest.begin(), rest.end());
  const std::vector<Served> without = Serve(*plain, requests);

  for (size_t i = 0; i < requests.size(); ++i) {
    const auto want = DemoModel::Get().Oracle(requests[i].prompt, 8, true);
    EXPECT_EQ(with[i].tokens, want) << i;
    EXPECT_EQ(without[i].tokens, want) << i;
    EXPECT_EQ(without[i].cached, 0);
    EXPECT_EQ(with[i].cached, i == 0 ? 0 : 64) << i;
  }
  const EngineMetrics m = cached->Metrics();
  EXPECT_EQ(m.prefix_cache_hits, 64u * 7);
  EXPECT_GT(m.prefix_cache_queries, m.prefix_cache_hits);
  EXPECT_GT(m.prefix_snapshots, 0);
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_GT(m.kv_blocks_cached, 0);
  EXPECT_EQ(plain->Metrics().prefix_cache_hits, 0u);
}

// The same prompt again, and a follow-up turn that extends prompt + answer: both start at the
// snapshot taken at the first prompt's last block boundary (48 for 50 tokens).
TEST_F(PrefixCacheTest, RepeatedPromptAndFollowUpTurn) {
  auto engine = Make(true);
  const std::vector<int32_t> prompt = test::RandomPrompt(rng_, 50, vocab_);
  Request first = test::Greedy(prompt, 10);
  first.ignore_eos = true;
  const Served a = Serve(*engine, {first})[0];
  const Served b = Serve(*engine, {first})[0];
  EXPECT_EQ(a.cached, 0);
  EXPECT_EQ(b.cached, 48);
  EXPECT_EQ(a.tokens, DemoModel::Get().Oracle(prompt, 10, true));
  EXPECT_EQ(b.tokens, a.tokens);

  std::vector<int32_t> turn2 = prompt;
  turn2.insert(turn2.end(), a.tokens.begin(), a.tokens.end());
  auto more = test::RandomPrompt(rng_, 12, vocab_);
  turn2.insert(turn2.end(), more.begin(), more.end());
  Request second = test::Greedy(turn2, 6);
  second.ignore_eos = true;
  const Served c = Serve(*engine, {second})[0];
  EXPECT_EQ(c.cached, 48);
  EXPECT_EQ(c.tokens, DemoModel::Get().Oracle(turn2, 6, true));
}

// n > 1: sequences 1..n-1 wait for sequence 0's prompt and reuse it; greedy, so all equal.
TEST_F(PrefixCacheTest, ParallelSamplingSharesThePrompt) {
  for (bool caching : {true, false}) {
    auto engine = Make(caching);
    Request r = test::Greedy(test::RandomPrompt(rng_, 45, vocab_), 7);
    r.ignore_eos = true;
    r.n = 3;
    auto h = engine->Submit(r);
    ASSERT_TRUE(h.ok()) << h.error().message;
    auto got = ReadAll(*h, 3);
    const auto want = DemoModel::Get().Oracle(r.prompt, 7, true);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(got[i].tokens, want) << "sequence " << i << " caching " << caching;
      EXPECT_EQ(got[i].last().index, i);
      EXPECT_EQ(got[i].last().num_cached_prompt_tokens, caching && i > 0 ? 32 : 0) << i;
    }
  }
}

// Cache salt and content hashes are part of the key: the same ids with other content or another
// salt are not reused.
TEST_F(PrefixCacheTest, SaltAndContentHashesSeparateEntries) {
  auto engine = Make(true);
  Request r = test::Greedy(test::RandomPrompt(rng_, 40, vocab_), 3);
  r.ignore_eos = true;
  r.cache_salt = "tenant-a";
  r.content_hashes = {{20, 8, "image-1"}};
  EXPECT_EQ(Serve(*engine, {r})[0].cached, 0);
  EXPECT_EQ(Serve(*engine, {r})[0].cached, 32);
  Request other_salt = r;
  other_salt.cache_salt = "tenant-b";
  EXPECT_EQ(Serve(*engine, {other_salt})[0].cached, 0);
  Request other_image = r;
  other_image.content_hashes = {{20, 8, "image-2"}};
  // Block 0 (positions 0-15) does not overlap the image and is still shared, but the sliding
  // snapshot is at 32, after the image: nothing can be reused.
  EXPECT_EQ(Serve(*engine, {other_image})[0].cached, 0);
}

// One snapshot slot for prompts that alternate: snapshots are evicted and retaken, and results
// stay right.
TEST_F(PrefixCacheTest, SnapshotEvictionKeepsResultsRight) {
  auto engine = Make(true, 0, 1, 24);
  std::vector<std::vector<int32_t>> prompts = {test::RandomPrompt(rng_, 40, vocab_),
                                               test::RandomPrompt(rng_, 60, vocab_)};
  for (int round = 0; round < 3; ++round) {
    for (const auto& p : prompts) {
      Request r = test::Greedy(p, 5);
      r.ignore_eos = true;
      const Served s = Serve(*engine, {r})[0];
      EXPECT_EQ(s.tokens, DemoModel::Get().Oracle(p, 5, true)) << round;
      // Each prompt evicts the other's snapshot from the single slot.
      EXPECT_EQ(s.cached, 0) << round;
    }
  }
  // Now the same prompt twice in a row hits.
  Request r = test::Greedy(prompts[1], 5);
  r.ignore_eos = true;
  EXPECT_EQ(Serve(*engine, {r})[0].cached, 48);
  EXPECT_EQ(engine->Metrics().prefix_snapshots, 1);
}

}  // namespace
}  // namespace gs
