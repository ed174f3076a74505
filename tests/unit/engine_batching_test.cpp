// Continuous batching, chunked prefill, cancellation and preemption: every greedy request served
// among many others must equal its single-request result from gs::Generate, token for token.
#include <thread>

#include "engine_test_util.h"

namespace gs {
namespace {

using test::DemoModel;
using test::ReadAll;

struct Case {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  bool ignore_eos = false;
};

// Prompt lengths 1..90: shorter and longer than the demo's sliding window (32) and than the
// step budgets used below (24-40 tokens), so prompts are split into chunks.
std::vector<Case> RandomCases(int count, uint32_t seed, int max_prompt = 90, int max_out = 14) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> len(1, max_prompt), out(1, max_out), coin(0, 3);
  std::vector<Case> cases;
  for (int i = 0; i < count; ++i) {
    Case c;
    c.prompt = test::RandomPrompt(rng, len(rng), DemoModel::Get().config().vocab_size);
    c.max_tokens = out(rng);
    c.ignore_eos = coin(rng) == 0;
    cases.push_back(std::move(c));
  }
  return cases;
}

Request ToRequest(const Case& c) {
  Request r = test::Greedy(c.prompt, c.max_tokens);
  r.ignore_eos = c.ignore_eos;
  return r;
}

std::unique_ptr<Engine> MakeEngine(ModelRunner& runner, const EngineConfig& config) {
  auto e = Engine::Create(runner, config);
  EXPECT_TRUE(e.ok()) << e.error().message;
  return e.ok() ? std::move(*e) : nullptr;
}

void ExpectMatchesOracle(const Case& c, const test::SeqResult& got, const std::string& what) {
  const std::vector<int32_t> want = DemoModel::Get().Oracle(c.prompt, c.max_tokens, c.ignore_eos);
  EXPECT_EQ(got.tokens, want) << what << ": prompt of " << c.prompt.size() << " tokens, max_tokens "
                              << c.max_tokens;
  const bool by_eos = !c.ignore_eos && !want.empty() &&
                      std::ranges::find(DemoModel::Get().config().eos_token_ids, want.back()) !=
                          DemoModel::Get().config().eos_token_ids.end();
  EXPECT_EQ(got.finish, by_eos ? FinishReason::kStop : FinishReason::kLength) << what;
  EXPECT_EQ(got.last().num_output_tokens, static_cast<int>(want.size())) << what;
  EXPECT_EQ(got.last().num_prompt_tokens, static_cast<int>(c.prompt.size())) << what;
}

TEST(EngineBatching, ConcurrentGreedyRequestsMatchSingleRequestResults) {
  EngineConfig config;
  config.max_num_seqs = 8;
  config.max_num_batched_tokens = 40;
  config.max_waiting_requests = 64;
  auto runner = DemoModel::Get().Runner(EngineKvSpec(config, 96));
  auto engine = MakeEngine(*runner, config);
  ASSERT_TRUE(engine);
  const std::vector<Case> cases = RandomCases(32, 11, 80, 12);

  // Half submitted up front, half from another thread while the first half runs.
  std::vector<RequestHandle> handles(cases.size());
  for (size_t i = 0; i < cases.size() / 2; ++i) {
    auto h = engine->Submit(ToRequest(cases[i]));
    ASSERT_TRUE(h.ok()) << h.error().message;
    handles[i] = *h;
  }
  std::thread late([&] {
    for (size_t i = cases.size() / 2; i < cases.size(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      auto h = engine->Submit(ToRequest(cases[i]));
      if (h.ok()) handles[i] = *h;
    }
  });
  late.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(handles[i]) << i;
    auto got = ReadAll(handles[i], 1);
    ExpectMatchesOracle(cases[i], got[0], "request " + std::to_string(i));
  }
  engine->Shutdown(ShutdownMode::kDrain);
  const EngineMetrics m = engine->Metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.num_running_seqs, 0);
  EXPECT_EQ(m.num_waiting_seqs, 0);
  EXPECT_EQ(m.finished_sequences[static_cast<size_t>(FinishReason::kAbort)], 0u);
  EXPECT_EQ(m.ttft_seconds.count, cases.size());
  EXPECT_EQ(m.e2e_seconds.count, cases.size());
  uint64_t prompt_tokens = 0;
  for (const Case& c : cases) prompt_tokens += c.prompt.size();
  EXPECT_EQ(m.prompt_tokens, prompt_tokens);
  EXPECT_GT(m.steps, 0u);
}

TEST(EngineBatching, RandomCancellationsLeakNothing) {
  EngineConfig config;
  config.max_num_seqs = 6;
  config.max_num_batched_tokens = 32;
  auto runner = DemoModel::Get().Runner(EngineKvSpec(config, 64));
  auto engine = MakeEngine(*runner, config);
  ASSERT_TRUE(engine);
  std::vector<Case> cases = RandomCases(16, 23, 48, 30);
  for (Case& c : cases) c.ignore_eos = true;  // long runs, so cancels land mid-flight

  std::vector<RequestHandle> handles;
  for (const Case& c : cases) {
    auto h = engine->Submit(ToRequest(c));
    ASSERT_TRUE(h.ok()) << h.error().message;
    handles.push_back(*h);
  }
  // Cancel every other request at a random moment: before it starts, mid-prefill, mid-decode.
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> wait_ms(0, 120);
  for (size_t i = 0; i < handles.size(); i += 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms(rng)));
    engine->Cancel(handles[i]->id());
  }
  engine->Cancel(987654321);  // unknown ids are ignored
  int aborted = 0;
  for (size_t i = 0; i < handles.size(); ++i) {
    auto got = ReadAll(handles[i], 1);
    if (got[0].finish == FinishReason::kAbort) {
      ++aborted;
      EXPECT_EQ(i % 2, 0u) << "only cancelled requests abort";
      // What it produced before the cancel is a prefix of the full result.
      const auto want = DemoModel::Get().Oracle(cases[i].prompt, cases[i].max_tokens, true);
      ASSERT_LE(got[0].tokens.size(), want.size());
      EXPECT_TRUE(std::equal(got[0].tokens.begin(), got[0].tokens.end(), want.begin())) << i;
    } else {
      ExpectMatchesOracle(cases[i], got[0], "request " + std::to_string(i));
    }
  }
  EXPECT_GT(aborted, 0);
  // The step that was running when the last cancel arrived has finished: nothing is held.
  EngineMetrics m = engine->Metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.num_running_seqs + m.num_waiting_seqs, 0);

  // And the engine still serves new requests correctly.
  const std::vector<Case> more = RandomCases(6, 99);
  std::vector<RequestHandle> next;
  for (const Case& c : more) next.push_back(*engine->Submit(ToRequest(c)));
  for (size_t i = 0; i < more.size(); ++i) {
    ExpectMatchesOracle(more[i], ReadAll(next[i], 1)[0], "after cancels " + std::to_string(i));
  }
  EXPECT_EQ(engine->Metrics().kv_blocks_used, 0);
}

// A pool far too small for the load: sequences get preempted and recomputed, and still every
// result equals the oracle. Run with and without prefix caching (with it, recomputation reuses
// cached blocks and evicts others).
void RunPreemption(bool prefix_caching) {
  EngineConfig config;
  config.max_num_seqs = 8;
  config.max_num_batched_tokens = 24;
  config.enable_prefix_caching = prefix_caching;
  config.prefix_snapshot_interval = 32;
  auto runner = DemoModel::Get().Runner(EngineKvSpec(config, 10, 4));  // 160 tokens in all
  auto engine = MakeEngine(*runner, config);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->info().max_model_len, 160);
  std::vector<Case> cases = RandomCases(16, 37, 70, 24);
  for (Case& c : cases) c.ignore_eos = true;
  // Two requests share a prompt, so with caching their blocks are shared under pressure too.
  cases[3].prompt = cases[2].prompt;
  std::vector<RequestHandle> handles;
  for (const Case& c : cases) handles.push_back(*engine->Submit(ToRequest(c)));
  for (size_t i = 0; i < cases.size(); ++i) {
    ExpectMatchesOracle(cases[i], ReadAll(handles[i], 1)[0], "request " + std::to_string(i));
  }
  const EngineMetrics m = engine->Metrics();
  EXPECT_GT(m.preemptions, 0u);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(EngineBatching, PreemptionByRecomputeGivesOracleResults) { RunPreemption(false); }
TEST(EngineBatching, PreemptionWithPrefixCachingGivesOracleResults) { RunPreemption(true); }

TEST(EngineBatching, BoundedQueueAndShutdown) {
  EngineConfig config;
  config.max_num_seqs = 1;
  config.max_waiting_requests = 2;
  auto runner = DemoModel::Get().Runner(EngineKvSpec(config, 16));
  auto engine = MakeEngine(*runner, config);
  ASSERT_TRUE(engine);
  std::mt19937 rng(3);
  std::vector<RequestHandle> accepted;
  SubmitError kind = SubmitError::kNone;
  bool overloaded = false;
  for (int i = 0; i < 12 && !overloaded; ++i) {
    Request r = test::Greedy(test::RandomPrompt(rng, 60, 1024), 50);
    r.ignore_eos = true;
    auto h = engine->Submit(std::move(r), &kind);
    if (h.ok()) {
      accepted.push_back(*h);
    } else {
      EXPECT_EQ(kind, SubmitError::kOverloaded);
      EXPECT_NE(h.error().message.find("overloaded"), std::string::npos) << h.error().message;
      overloaded = true;
    }
  }
  EXPECT_TRUE(overloaded);
  // Invalid requests name the parameter.
  Request bad = test::Greedy({5, 6, 7}, 0);
  auto h = engine->Submit(bad, &kind);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(kind, SubmitError::kInvalidRequest);
  EXPECT_NE(h.error().message.find("max_tokens"), std::string::npos) << h.error().message;
  bad = test::Greedy({5, 6, 5000}, 4);
  EXPECT_NE(engine->Validate(bad).error().message.find("vocabulary"), std::string::npos);

  engine->Shutdown(ShutdownMode::kCancel);
  for (auto& a : accepted) {
    auto got = ReadAll(a, 1);
    EXPECT_EQ(got[0].finish, FinishReason::kAbort);
  }
  auto after = engine->Submit(test::Greedy({5, 6}, 2), &kind);
  EXPECT_FALSE(after.ok());
  EXPECT_EQ(kind, SubmitError::kShuttingDown);
  EXPECT_EQ(engine->Metrics().kv_blocks_used, 0);
}

}  // namespace
}  // namespace gs
