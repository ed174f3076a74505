// Many clients at once against the in-process server on the demo model: every completed greedy
// request equals its single-request result (gs::Generate) token for token, clients that leave
// mid-stream free their KV, shared prefixes hit the prefix cache without changing results, and a
// KV pool too small for the load preempts and still completes everything correctly.
#include <atomic>
#include <random>
#include <thread>

#include "server/sse_client.h"
#include "server_test_util.h"

namespace gs::test {
namespace {

struct StreamOutcome {
  std::vector<int32_t> tokens;
  std::string finish;
  bool done = false;     // saw [DONE]
  bool left = false;     // the client disconnected on purpose
  int status = 0;
  std::string error;
  int usage_completion = -1;
};

// A streamed greedy completion of token ids; the client disconnects after `leave_after` chunks
// (-1: never).
StreamOutcome StreamIds(int port, const std::vector<int32_t>& prompt, int max_tokens,
                        int leave_after) {
  StreamOutcome out;
  Json body = {{"model", "demo"},         {"prompt", prompt},
               {"max_tokens", max_tokens}, {"temperature", 0},
               {"stream", true},          {"return_token_ids", true},
               {"stream_options", {{"include_usage", true}}}};
  int chunks = 0;
  auto r = server::PostStream("127.0.0.1", port, "/v1/completions", body.dump(), "",
                              [&](const std::string& data) {
                                Json c = Json::parse(data, nullptr, false);
                                if (c.is_discarded()) {
                                  out.error = "bad chunk " + data;
                                  return false;
                                }
                                if (c.contains("usage") && c["usage"].is_object()) {
                                  out.usage_completion = c["usage"]["completion_tokens"];
                                }
                                for (const Json& ch : c["choices"]) {
                                  for (const Json& t : ch["token_ids"]) out.tokens.push_back(t);
                                  if (!ch["finish_reason"].is_null()) out.finish = ch["finish_reason"];
                                }
                                if (leave_after >= 0 && ++chunks > leave_after) {
                                  out.left = true;
                                  return false;
                                }
                                return true;
                              },
                              120);
  out.status = r.status;
  out.done = r.completed;
  if (!r.error.empty()) out.error += r.error;
  return out;
}

std::vector<int32_t> RandomIds(std::mt19937& rng, int n, int vocab) {
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (auto& t : p) t = id(rng);
  return p;
}

// Waits until the engine holds no sequence and no KV block (cancellations land at the next step).
void ExpectIdleAndNoLeak(int port) {
  double used = -1, running = -1, waiting = -1;
  for (int i = 0; i < 200; ++i) {
    const std::string m = Get(port, "/metrics").body;
    used = MetricValue(m, "gemmaserve:kv_blocks_used");
    running = MetricValue(m, "vllm:num_requests_running");
    waiting = MetricValue(m, "vllm:num_requests_waiting");
    if (used == 0 && running == 0 && waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(used, 0) << "KV blocks still held after every request ended";
  EXPECT_EQ(running, 0);
  EXPECT_EQ(waiting, 0);
  EXPECT_EQ(Get(port, "/health").status, 200);
}

TEST(ServerConcurrency, SixtyFourStreamsWithDisconnectsMatchSingleRequests) {
  TestServerOptions opts;
  opts.max_num_seqs = 16;
  auto server = StartServer(opts);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const int vocab = DemoModelDir::Get().config().vocab_size;
  constexpr int kClients = 64;
  std::mt19937 rng(7);
  const std::vector<int32_t> shared = RandomIds(rng, 48, vocab);  // three full KV blocks
  struct Plan {
    std::vector<int32_t> prompt;
    int max_tokens;
    int leave_after;
  };
  std::vector<Plan> plans;
  for (int i = 0; i < kClients; ++i) {
    Plan p;
    if (i % 2 == 0) {  // half share a 48-token prefix (prefix-cache hits)
      p.prompt = shared;
      auto tail = RandomIds(rng, 1 + static_cast<int>(rng() % 12), vocab);
      p.prompt.insert(p.prompt.end(), tail.begin(), tail.end());
    } else {
      p.prompt = RandomIds(rng, 2 + static_cast<int>(rng() % 60), vocab);
    }
    p.max_tokens = 1 + static_cast<int>(rng() % 24);
    p.leave_after = (rng() % 4 == 0) ? static_cast<int>(rng() % 4) : -1;  // ~1 in 4 leaves
    plans.push_back(std::move(p));
  }
  std::vector<StreamOutcome> outcomes(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      outcomes[static_cast<size_t>(i)] = StreamIds(port, plans[static_cast<size_t>(i)].prompt,
                                                   plans[static_cast<size_t>(i)].max_tokens,
                                                   plans[static_cast<size_t>(i)].leave_after);
    });
  }
  for (auto& t : clients) t.join();

  int completed = 0, left = 0;
  for (int i = 0; i < kClients; ++i) {
    const StreamOutcome& o = outcomes[static_cast<size_t>(i)];
    const Plan& p = plans[static_cast<size_t>(i)];
    EXPECT_EQ(o.status, 200) << "client " << i << ": " << o.error << " left " << o.left;
    if (o.status != 200) continue;
    if (o.left) {
      ++left;
      continue;
    }
    ++completed;
    EXPECT_TRUE(o.done) << "client " << i << " stream ended without [DONE]: " << o.error;
    const std::vector<int32_t> expected = DemoModelDir::Get().Oracle(p.prompt, p.max_tokens, false);
    EXPECT_EQ(o.tokens, expected) << "client " << i << " (prompt " << p.prompt.size() << ", max "
                                  << p.max_tokens << ")";
    EXPECT_EQ(o.usage_completion, static_cast<int>(expected.size())) << "client " << i;
    // An eos as the last allowed token still counts as a stop (vLLM checks stops first).
    const auto& eos = DemoModelDir::Get().config().eos_token_ids;
    const bool ends_in_eos = !expected.empty() && std::find(eos.begin(), eos.end(),
                                                            expected.back()) != eos.end();
    EXPECT_EQ(o.finish, ends_in_eos ? "stop" : "length") << "client " << i;
  }
  EXPECT_GT(left, 0);
  EXPECT_GT(completed, kClients / 2);
  EXPECT_GT(Metric(port, "vllm:prefix_cache_hits_total"), 0) << "shared prefixes never hit";
  EXPECT_GT(Metric(port, "gemmaserve:stream_disconnects_total"), 0);
  ExpectIdleAndNoLeak(port);
  // Still serving.
  const auto again = StreamIds(port, shared, 4, -1);
  EXPECT_EQ(again.tokens, DemoModelDir::Get().Oracle(shared, 4, false));
}

TEST(ServerConcurrency, PrefixCacheHitsGiveIdenticalResults) {
  TestServerOptions opts;
  opts.max_num_seqs = 4;
  auto server = StartServer(opts);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  std::mt19937 rng(11);
  const int vocab = DemoModelDir::Get().config().vocab_size;
  const std::vector<int32_t> system = RandomIds(rng, 64, vocab);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    auto p = system;
    auto tail = RandomIds(rng, 3 + i, vocab);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  prompts.push_back(prompts[0]);  // an identical prompt
  double hits_before = Metric(port, "vllm:prefix_cache_hits_total");
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto r = PostJson(port, "/v1/completions",
                            {{"prompt", prompts[i]}, {"max_tokens", 12}, {"temperature", 0},
                             {"return_token_ids", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    std::vector<int32_t> got = r.json["choices"][0]["token_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(got, DemoModelDir::Get().Oracle(prompts[i], 12, false)) << "prompt " << i;
    const double hits = Metric(port, "vllm:prefix_cache_hits_total");
    const int cached = r.json["usage"]["prompt_tokens_details"]["cached_tokens"];
    if (i > 0) {
      EXPECT_GE(hits - hits_before, 64) << "prompt " << i << " did not reuse the shared prefix";
      EXPECT_GE(cached, 64) << r.body;
    }
    hits_before = hits;
  }
}

TEST(ServerConcurrency, TooSmallKvPoolPreemptsAndStillCompletesCorrectly) {
  // 16 blocks of 16 tokens for 8 running sequences that each grow to ~80 tokens.
  TestServerOptions opts;
  opts.max_num_seqs = 8;
  opts.kv_tokens = 256;
  opts.max_num_batched_tokens = 64;
  opts.max_model_len = 128;
  opts.prefix_caching = false;
  auto server = StartServer(opts);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  std::mt19937 rng(5);
  const int vocab = DemoModelDir::Get().config().vocab_size;
  constexpr int kRequests = 12;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kRequests; ++i) prompts.push_back(RandomIds(rng, 30 + i, vocab));
  std::vector<HttpReply> replies(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      replies[static_cast<size_t>(i)] =
          PostJson(port, "/v1/completions",
                   {{"prompt", prompts[static_cast<size_t>(i)]}, {"max_tokens", 48},
                    {"temperature", 0}, {"ignore_eos", true}, {"return_token_ids", true}});
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    const HttpReply& r = replies[static_cast<size_t>(i)];
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json["choices"][0]["token_ids"].get<std::vector<int32_t>>(),
              DemoModelDir::Get().Oracle(prompts[static_cast<size_t>(i)], 48, true))
        << "request " << i;
    EXPECT_EQ(r.json["choices"][0]["finish_reason"], "length");
  }
  EXPECT_GT(Metric(port, "vllm:num_preemptions_total"), 0) << "the pool was never short";
  ExpectIdleAndNoLeak(port);
}

}  // namespace
}  // namespace gs::test
