// The engine (DESIGN §3): a thread-safe front (Submit / Cancel / Shutdown / Metrics) and one
// engine thread that drives a ModelRunner step by step with the Scheduler. The server talks only
// to this class.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/metrics.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/text_decoder.h"
#include "runtime/model_runner.h"

namespace gs {

struct EngineConfig {
  int max_num_seqs = 32;              // sequences in flight (each needs a runner KV slot)
  int max_num_batched_tokens = 2048;  // tokens per forward step (decode + prefill chunks)
  int max_model_len = 0;  // prompt + output; 0 = min(max_position_embeddings, KV pool)
  int max_waiting_requests = 256;     // Submit fails with kOverloaded beyond this
  bool enable_prefix_caching = true;
  // Extra sliding-state snapshot points inside prompts, in tokens (rounded up to whole blocks);
  // 0 = only at the end of each prompt. See kv_cache.h.
  int prefix_snapshot_interval = 0;
  const TextDecoder* text_decoder = nullptr;  // needed for stop strings; must outlive the engine
};

// The KV spec to build a runner with for this config: max_num_seqs sequence slots plus
// `prefix_snapshots` slots for prefix-cache snapshots of sliding-layer state.
KvCacheSpec EngineKvSpec(const EngineConfig& config, int num_global_blocks,
                         int prefix_snapshots = 8, int block_size = 16);

// What the engine settled on at startup (for the log line and /metrics info).
struct EngineInfo {
  int kv_capacity_tokens = 0;  // global-layer blocks × block size
  int num_blocks = 0;
  int block_size = 0;
  int max_num_seqs = 0;
  int max_model_len = 0;
  int max_num_batched_tokens = 0;
  bool prefix_caching = false;
  int prefix_snapshot_slots = 0;
  std::string note;  // why a setting differs from what was asked, if it does
  std::string Describe() const;
};

enum class SubmitError { kNone, kInvalidRequest, kOverloaded, kShuttingDown };
enum class ShutdownMode { kDrain, kCancel };

class Engine {
 public:
  // `runner` must outlive the engine and be used by nothing else meanwhile.
  static Expected<std::unique_ptr<Engine>> Create(ModelRunner& runner, const EngineConfig& config);
  ~Engine();  // Shutdown(kCancel)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Errors: an invalid request (names the parameter), a full queue
  // ("overloaded"), or an engine shutting down; `error_kind` tells which, for HTTP status codes.
  Expected<RequestHandle> Submit(Request request, SubmitError* error_kind = nullptr);
  Status Validate(const Request& request) const;
  // Ends a request's sequences with FinishReason::kAbort and frees their KV at the next step
  // boundary. Unknown or finished ids are ignored.
  void Cancel(RequestId id);
  // kDrain: stop accepting, finish what was submitted. kCancel: abort everything. Then joins the
  // engine thread. Idempotent.
  void Shutdown(ShutdownMode mode);

  EngineMetrics Metrics() const;
  const EngineInfo& info() const { return info_; }
  // Request sampling defaults from generation_config.json.
  SamplingParams DefaultSampling() const { return SamplingDefaults(runner_.config().generation); }

 private:
  Engine(ModelRunner& runner, const EngineConfig& config, const EngineInfo& info,
         const KvCacheOptions& kv_options);
  std::unique_ptr<RequestState> MakeState(Request request, RequestId id);
  Status ValidateImages(const Request& request) const;
  bool AttachImages(StepPlan* plan, StepResult* out);
  void EncodeGroup(std::span<const std::pair<RequestState*, int>> group,
                   std::vector<std::pair<RequestId, std::string>>* failed);
  void ReleaseImages(const StepPlan& plan);
  void Loop();
  void Step(StepResult* result);
  // The forward step: Forward, or ForwardSample when the runner samples on its device (then the
  // host logits are copied only when some row must be sampled here).
  Status RunModel(const StepPlan& plan);
  bool RunCopies(const std::vector<std::pair<int, int>>& copies, std::string* error);
  void Deliver(StepResult& result);
  void Publish();

  ModelRunner& runner_;
  const EngineConfig config_;
  const EngineInfo info_;
  std::vector<int32_t> eos_ids_;
  Scheduler scheduler_;  // engine thread only
  uint64_t images_encoded_ = 0;  // engine thread only; published in metrics

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RequestState>> incoming_;
  std::vector<RequestId> cancels_;
  std::optional<ShutdownMode> shutdown_;
  int waiting_in_scheduler_ = 0;
  RequestId next_id_ = 1;
  std::mt19937_64 seeds_{std::random_device{}()};  // for requests without a seed

  mutable std::mutex metrics_mu_;
  EngineMetrics published_;
  std::vector<float> logits_;
  DeviceSamples device_samples_;
  bool device_step_ = false;  // the last RunModel went through ForwardSample
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace gs
