// Continuous batching (as vLLM v1's scheduler): every step takes up to max_num_batched_tokens
// tokens, first from running sequences in arrival order (one decode token, or the next prefill
// chunk), then admits waiting sequences while slots (max_num_seqs) and KV blocks last. Long
// prompts are split into chunks across steps. When a running sequence needs a block and none is
// free, the most recently admitted sequence is preempted: its KV is dropped and it goes back to
// the head of the queue to be recomputed later (prompt + tokens so far; its sampler state is
// kept, so its output is what it would have been). The scheduler is driven by one thread.
//
// Images (issue 7): a chunk never ends inside an image's soft tokens, because on sliding layers
// they attend to each other bidirectionally and so must be in one forward step. A chunk that would
// end inside an image ends before it instead; a chunk that starts at (or, after a prefix-cache hit,
// inside) an image runs to the image's end even past max_num_batched_tokens (as vLLM schedules
// encoder inputs): a step exceeds the budget by less than one image's soft-token count (<= 1120).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/metrics.h"
#include "engine/sequence.h"
#include "model/config.h"
#include "runtime/batch.h"

namespace gs {

struct SchedulerConfig {
  int max_num_seqs = 1;
  int max_num_batched_tokens = 1;
  int max_model_len = 1;
  int snapshot_interval = 0;  // tokens (multiple of block_size); 0 = only at prompt ends
};

struct ScheduledSequence {
  Sequence* seq = nullptr;
  int num_new = 0;
  int logits_row = -1;  // row of the step's logits to sample from; -1: mid-prefill
};

// One image's soft tokens in this step's batch; the engine encodes the image and fills in
// batch.image_spans from these.
struct PlannedImage {
  Sequence* seq = nullptr;
  int image = 0;        // index into the request's images
  int first_token = 0;  // index into batch.token_ids
  int offset = 0;       // first soft token of the image in this step (> 0 after a prefix hit in it)
  int num_tokens = 0;
};

struct StepPlan {
  Batch batch;
  std::vector<ScheduledSequence> entries;
  std::vector<PlannedImage> images;  // in batch order
  std::vector<std::pair<int, int>> slot_copies;  // (src, dst): run before the forward step
  bool empty() const { return entries.empty(); }
};

// Tokens the runner already picked for some logits rows (ModelRunner::ForwardSample); the other
// rows are sampled from the host logits as before.
struct DeviceSamples {
  std::vector<char> picked;     // per logits row
  std::vector<int32_t> ids;     // per logits row (valid where picked)
  std::vector<float> logprobs;  // per logits row, when some picked row's request wants logprobs
};

struct Emitted {
  RequestHandle stream;
  TokenEvent event;
};

struct StepResult {
  std::vector<Emitted> events;
  std::vector<std::pair<int, int>> slot_copies;  // (src, dst): snapshots to take right away
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, const KvCacheSpec& spec, const KvCacheOptions& kv,
            const ModelConfig& model);

  void Add(std::unique_ptr<RequestState> request);
  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  int num_waiting_requests() const { return waiting_requests_; }

  StepPlan Schedule();
  // After a successful forward step: advances the sequences, caches full blocks, samples (or
  // takes `device`'s token for rows it picked; may be null) and checks stop conditions. `logits`
  // rows are modified in place.
  void Update(const StepPlan& plan, std::vector<float>& logits, const DeviceSamples* device,
              StepResult* out);
  // Takes the sequences of `requests` out of a plan not yet run (before Abort ends them), so the
  // rest of the step can still run.
  void DropFromPlan(StepPlan* plan, const std::vector<RequestId>& requests);
  // After a failed step: ends the step's sequences with kError.
  void Fail(const StepPlan& plan, const std::string& error, StepResult* out);
  // Ends every unfinished sequence of a request (or of all requests) with `reason`.
  void Abort(RequestId id, FinishReason reason, const std::string& error, StepResult* out);
  void AbortAll(FinishReason reason, const std::string& error, StepResult* out);

  void ForgetSnapshot(int slot) { kv_.ForgetSnapshot(slot); }
  const KvCacheManager& kv() const { return kv_; }
  // Gauges refreshed, counters and histograms as accumulated.
  EngineMetrics metrics() const;

 private:
  int SnapshotPointAfter(const Sequence& s, int position) const;
  int ChunkEnd(const Sequence& s, int budget) const;
  static int KeepImagesWhole(const Sequence& s, int end);
  bool Eligible(const Sequence& s) const;
  bool Admit(Sequence* s, int budget, StepPlan* plan);
  void AddToPlan(Sequence* s, int end, StepPlan* plan);
  void Preempt(Sequence* s);
  std::vector<BlockKey> Keys(Sequence& s, int num_blocks);
  void CacheBlocks(Sequence& s, StepResult* out);
  void SampleNext(Sequence& s, std::span<float> row, StepResult* out);
  void Emit(Sequence& s, int32_t token, const Request& req, float logprob,
            std::vector<TokenLogprob> top_logprobs, StepResult* out);
  void Finish(Sequence* s, TokenEvent event, StepResult* out);
  void CollectFinished();

  SchedulerConfig config_;
  const ModelConfig& model_;
  KvCacheManager kv_;
  bool prefix_caching_;
  bool snapshots_;
  std::unordered_map<RequestId, std::unique_ptr<RequestState>> requests_;
  std::vector<Sequence*> running_;  // admission order
  std::deque<Sequence*> waiting_;
  int waiting_requests_ = 0;
  std::vector<RequestId> finished_requests_;
  EngineMetrics metrics_;
};

}  // namespace gs
