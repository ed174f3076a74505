// The engine's choice between sampling on the runner's device (ModelRunner::ForwardSample, issue
// 4) and on the host, with a runner that records what it was asked: a sequence goes to the device
// when it needs only temperature / top-k / top-p / min-p (and at most its token's logprob), with
// its seed (+ index for n > 1) and step = tokens generated so far; penalties, logit bias,
// top_logprobs, guided constraints and pending min_tokens masking keep it on the host (the step
// then also copies the logits). A runner without device sampling only ever sees Forward, and its
// seeded outputs are still gs::Generate's. A request's tokens do not change when it shares steps
// with host-sampled requests. Steps of prefill chunks alone (no token to pick) stay on Forward.
#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "engine_test_util.h"

namespace gs {
namespace {

using test::DemoModel;
using test::ReadAll;

class RecordingRunner : public ModelRunner {
 public:
  struct Call {
    std::vector<GpuSamplingParams> rows;
    bool logits = false;    // host logits asked for
    bool logprobs = false;  // device logprobs asked for
  };

  RecordingRunner(std::unique_ptr<ModelRunner> inner, bool device)
      : inner_(std::move(inner)), device_(device) {}

  const ModelConfig& config() const override { return inner_->config(); }
  const KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  bool supports_slot_copy() const override { return inner_->supports_slot_copy(); }
  Status CopySlot(int src, int dst) override { return inner_->CopySlot(src, dst); }
  bool samples_on_device() const override { return device_; }

  Status Forward(const Batch& batch, std::vector<float>* logits) override {
    if (!in_sample_) {
      std::lock_guard<std::mutex> lock(mu_);
      ++forward_calls_;
      forward_logit_rows_ += static_cast<int>(batch.logits_indices.size());
    }
    return inner_->Forward(batch, logits);
  }

  Status ForwardSample(const Batch& batch, const std::vector<GpuSamplingParams>& per_row,
                       std::vector<int32_t>* ids, std::vector<float>* logprobs,
                       std::vector<float>* logits) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back({per_row, logits != nullptr, logprobs != nullptr});
    }
    in_sample_ = true;  // the default implementation calls Forward
    Status st = ModelRunner::ForwardSample(batch, per_row, ids, logprobs, logits);
    in_sample_ = false;
    return st;
  }

  std::vector<Call> calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int forward_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return forward_calls_;
  }
  // Logits rows asked for through Forward (steps with a token to pick).
  int forward_logit_rows() const {
    std::lock_guard<std::mutex> lock(mu_);
    return forward_logit_rows_;
  }

 private:
  std::unique_ptr<ModelRunner> inner_;
  const bool device_;
  bool in_sample_ = false;  // engine thread only
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  int forward_calls_ = 0;
  int forward_logit_rows_ = 0;
};

// Allows every token: makes the request "guided" without changing its logits.
class AllowAll : public TokenConstraint {
 public:
  void Mask(std::span<float>) override {}
  void Accept(int32_t) override {}
};

class EngineDeviceSampling : public ::testing::Test {
 protected:
  void Start(bool device) {
    EngineConfig config;
    config.max_num_seqs = 8;
    config.max_num_batched_tokens = 64;
    engine_.reset();
    runner_ = std::make_unique<RecordingRunner>(
        DemoModel::Get().Runner(EngineKvSpec(config, 64)), device);
    auto e = Engine::Create(*runner_, config);
    ASSERT_TRUE(e.ok()) << e.error().message;
    engine_ = std::move(*e);
  }

  std::vector<test::SeqResult> Run(const Request& r) {
    return test::SubmitAndReadAll(*engine_, r);
  }

  Request Plain(int max_tokens, uint64_t seed) {
    Request r;
    r.prompt = test::RandomPrompt(rng_, 20, vocab_);
    r.sampling.temperature = 0.8;
    r.sampling.top_k = 20;
    r.sampling.top_p = 0.9;
    r.sampling.min_p = 0.05;
    r.sampling.seed = seed;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    return r;
  }

  std::unique_ptr<RecordingRunner> runner_;
  std::unique_ptr<Engine> engine_;
  std::mt19937 rng_{41};
  const int vocab_ = DemoModel::Get().config().vocab_size;
};

TEST_F(EngineDeviceSampling, PlainSamplingGoesToTheDeviceWithSeedPlusIndexAndStep) {
  Start(/*device=*/true);
  Request r = Plain(5, 77);
  r.n = 2;
  const auto got = Run(r);
  ASSERT_EQ(got[0].tokens.size(), 5u);
  ASSERT_EQ(got[1].tokens.size(), 5u);
  std::map<uint64_t, std::vector<uint64_t>> steps;  // seed -> steps in call order
  for (const auto& c : runner_->calls()) {
    EXPECT_FALSE(c.logits) << "a device-only step copied the logits";
    EXPECT_FALSE(c.logprobs);
    for (const GpuSamplingParams& g : c.rows) {
      EXPECT_FLOAT_EQ(g.temperature, 0.8f);
      EXPECT_EQ(g.top_k, 20);
      EXPECT_FLOAT_EQ(g.top_p, 0.9f);
      EXPECT_FLOAT_EQ(g.min_p, 0.05f);
      steps[g.seed].push_back(g.step);
    }
  }
  const std::vector<uint64_t> want = {0, 1, 2, 3, 4};
  EXPECT_EQ(steps[77], want);
  EXPECT_EQ(steps[78], want);
  EXPECT_EQ(steps.size(), 2u);
  EXPECT_EQ(runner_->forward_logit_rows(), 0);  // Forward ran prefill chunks only
  // Greedy requests go to the device as well (temperature 0 there is argmax).
  Request g = Plain(3, 5);
  g.sampling.temperature = 0;
  const size_t before = runner_->calls().size();
  const auto greedy = Run(g)[0].tokens;
  const auto calls = runner_->calls();
  EXPECT_EQ(calls.size(), before + 3);
  for (size_t i = before; i < calls.size(); ++i) EXPECT_FALSE(calls[i].logits);
  EXPECT_EQ(greedy, DemoModel::Get().Oracle(g.prompt, 3, true));
}

// Each feature the device path lacks puts the row on the host: every step then asks for the
// logits.
TEST_F(EngineDeviceSampling, UnsupportedFeaturesSampleOnTheHost) {
  Start(/*device=*/true);
  std::vector<std::pair<std::string, std::function<void(Request&)>>> cases = {
      {"repetition_penalty", [](Request& r) { r.sampling.repetition_penalty = 1.2; }},
      {"presence_penalty", [](Request& r) { r.sampling.presence_penalty = 0.5; }},
      {"frequency_penalty", [](Request& r) { r.sampling.frequency_penalty = -0.5; }},
      {"logit_bias", [](Request& r) { r.sampling.logit_bias = {{5, 2.0f}}; }},
      {"top_logprobs", [](Request& r) {
         r.logprobs = true;
         r.top_logprobs = 2;
       }},
      {"constraint", [](Request& r) {
         r.constraint = [] { return std::make_unique<AllowAll>(); };
       }},
  };
  for (auto& [name, edit] : cases) {
    SCOPED_TRACE(name);
    Request r = Plain(4, 9);
    edit(r);
    const size_t before = runner_->calls().size();
    const auto got = Run(r)[0];
    EXPECT_EQ(got.tokens.size(), 4u);
    const auto calls = runner_->calls();
    ASSERT_EQ(calls.size(), before + 4);
    for (size_t i = before; i < calls.size(); ++i) {
      EXPECT_TRUE(calls[i].logits) << "call " << i;
      EXPECT_FALSE(calls[i].logprobs);
    }
    // The host path is the Sampler's, as before: gs::Generate's tokens (no constraint effect).
    if (name != "top_logprobs" && name != "constraint") {
      EXPECT_EQ(got.tokens, DemoModel::Get().Oracle(r.prompt, 4, true, {}, r.sampling));
    }
  }
}

// While min_tokens masks the stop ids the row is sampled on the host; afterwards on the device,
// with the step counting every token generated so far.
TEST_F(EngineDeviceSampling, MinTokensMaskingStaysOnTheHostUntilSatisfied) {
  Start(/*device=*/true);
  Request r = Plain(6, 3);
  r.ignore_eos = false;
  r.stop_token_ids = {7};
  r.min_tokens = 3;
  const auto got = Run(r)[0];
  const auto calls = runner_->calls();
  ASSERT_EQ(calls.size(), got.tokens.size());
  ASSERT_GE(calls.size(), 4u);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].logits, i < 3) << "step " << i;
    if (i >= 3) {
      ASSERT_EQ(calls[i].rows.size(), 1u);
      EXPECT_EQ(calls[i].rows[0].step, i);
      EXPECT_EQ(calls[i].rows[0].seed, 3u);
    }
  }
}

// Chosen-token logprobs come from the device; they are the raw logits' log-softmax.
TEST_F(EngineDeviceSampling, LogprobsOnTheDeviceMatchTheOracleRows) {
  Start(/*device=*/true);
  Request r = Plain(5, 11);
  r.logprobs = true;
  const auto got = Run(r)[0];
  for (const auto& c : runner_->calls()) {
    EXPECT_FALSE(c.logits);
    EXPECT_TRUE(c.logprobs);
  }
  const auto rows = DemoModel::Get().LogitsAlong(r.prompt, got.tokens);
  ASSERT_EQ(rows.size(), 5u);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const double mx = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (float l : row) z += std::exp(l - mx);
    EXPECT_NEAR(got.events[i].logprob, row[got.tokens[i]] - mx - std::log(z), 1e-4) << i;
  }
}

// A device-sampled request gives the same tokens alone and in steps shared with a host-sampled
// one (those steps copy the logits for the host row; the device row still comes from the device).
TEST_F(EngineDeviceSampling, SameTokensWhenBatchedWithHostRows) {
  Start(/*device=*/true);
  const Request p = Plain(10, 1234);
  const auto alone = Run(p)[0].tokens;
  ASSERT_EQ(alone.size(), 10u);
  Request q = Plain(10, 99);
  q.sampling.repetition_penalty = 1.3;
  auto hp = engine_->Submit(p);
  auto hq = engine_->Submit(q);
  ASSERT_TRUE(hp.ok() && hq.ok());
  EXPECT_EQ(ReadAll(*hp, 1)[0].tokens, alone);
  EXPECT_EQ(ReadAll(*hq, 1)[0].tokens.size(), 10u);
  int mixed = 0;
  for (const auto& c : runner_->calls()) mixed += c.logits && c.rows.size() == 2;
  EXPECT_GT(mixed, 0) << "the two requests never shared a step";
}

// Without device sampling the engine calls Forward only; seeded sampling is gs::Generate's.
TEST_F(EngineDeviceSampling, RunnersWithoutDeviceSamplingUseForward) {
  Start(/*device=*/false);
  Request r = Plain(6, 21);
  const auto got = Run(r)[0].tokens;
  EXPECT_TRUE(runner_->calls().empty());
  EXPECT_EQ(runner_->forward_logit_rows(), 6);
  EXPECT_EQ(got, DemoModel::Get().Oracle(r.prompt, 6, true, {}, r.sampling));
}

}  // namespace
}  // namespace gs
