#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/block_hash.h"

namespace gs {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, const KvCacheSpec& spec,
                     const KvCacheOptions& kv, const ModelConfig& model)
    : config_(config),
      model_(model),
      kv_(spec, kv),
      prefix_caching_(kv.prefix_caching),
      snapshots_(kv.prefix_caching && kv.needs_snapshots) {}

void Scheduler::Add(std::unique_ptr<RequestState> request) {
  for (auto& s : request->sequences) waiting_.push_back(s.get());
  ++waiting_requests_;
  requests_[request->id] = std::move(request);
}

// ---- scheduling ----

// The next position after `position` where the sequence's sliding state should be snapshotted:
// every snapshot_interval tokens and at the last block boundary before the prompt's last token.
// Positions past the prompt get none (max int).
int Scheduler::SnapshotPointAfter(const Sequence& s, int position) const {
  constexpr int kNone = std::numeric_limits<int>::max();
  if (!snapshots_) return kNone;
  const int bs = kv_.block_size();
  const int prompt_end = (s.num_prompt - 1) / bs * bs;
  int point = prompt_end;
  if (config_.snapshot_interval > 0) {
    point = std::min(point, (position / config_.snapshot_interval + 1) * config_.snapshot_interval);
  }
  return point > position ? point : kNone;
}

// Where this step's chunk of `s` ends: its tokens, the budget, and the next snapshot point (so
// the ring can be copied exactly there), then moved out of any image (see the header).
int Scheduler::ChunkEnd(const Sequence& s, int budget) const {
  const int end = std::min(s.length(), s.num_computed + budget);
  return KeepImagesWhole(s, std::min(end, SnapshotPointAfter(s, s.num_computed)));
}

int Scheduler::KeepImagesWhole(const Sequence& s, int end) {
  for (const RequestImage& im : s.request->request.images) {
    if (end <= im.first_token || end >= im.end()) continue;
    // `end` falls inside this image: stop before it if the chunk has tokens before it, else take
    // it whole (the only way forward).
    return im.first_token > s.num_computed ? im.first_token : im.end();
  }
  return end;
}

// With prefix caching, sequences 1..n-1 of a request wait until sequence 0 has computed (and
// snapshotted) its prompt, then reuse it instead of computing the same prompt n times.
bool Scheduler::Eligible(const Sequence& s) const {
  if (s.index == 0 || !prefix_caching_) return true;
  const Sequence& leader = *s.request->sequences[0];
  if (leader.status == SeqStatus::kFinished) return true;
  const int prompt_end = (leader.num_prompt - 1) / kv_.block_size() * kv_.block_size();
  return leader.status == SeqStatus::kRunning && leader.num_computed >= prompt_end;
}

void Scheduler::AddToPlan(Sequence* s, int end, StepPlan* plan) {
  const int num_new = end - s->num_computed;
  BatchSequence bs;
  bs.slot = s->slot;
  bs.first_token = plan->batch.num_tokens();
  bs.num_tokens = num_new;
  bs.start_position = s->num_computed;
  bs.block_table = s->blocks;
  plan->batch.token_ids.insert(plan->batch.token_ids.end(), s->tokens.begin() + s->num_computed,
                               s->tokens.begin() + end);
  ScheduledSequence entry{s, num_new, -1};
  if (end == s->length()) {  // the step reaches its last token: sample the next one
    entry.logits_row = static_cast<int>(plan->batch.logits_indices.size());
    plan->batch.logits_indices.push_back(bs.first_token + num_new - 1);
  }
  const std::vector<RequestImage>& images = s->request->request.images;
  for (size_t i = 0; i < images.size(); ++i) {
    const int from = std::max(images[i].first_token, s->num_computed);
    const int to = std::min(images[i].end(), end);
    if (from >= to) continue;
    plan->images.push_back({s, static_cast<int>(i), bs.first_token + (from - s->num_computed),
                            from - images[i].first_token, to - from});
  }
  plan->batch.sequences.push_back(std::move(bs));
  plan->entries.push_back(entry);
}

void Scheduler::DropFromPlan(StepPlan* plan, const std::vector<RequestId>& requests) {
  auto dropped = [&](const Sequence* s) {
    return std::find(requests.begin(), requests.end(), s->request->id) != requests.end();
  };
  StepPlan rebuilt;
  for (const auto& copy : plan->slot_copies) {
    bool to_dropped = false;
    for (const ScheduledSequence& e : plan->entries) {
      to_dropped |= dropped(e.seq) && e.seq->slot == copy.second;
    }
    if (!to_dropped) rebuilt.slot_copies.push_back(copy);
  }
  // AddToPlan reads num_computed, which only Update advances: the same chunks come out.
  for (const ScheduledSequence& e : plan->entries) {
    if (!dropped(e.seq)) AddToPlan(e.seq, e.seq->num_computed + e.num_new, &rebuilt);
  }
  *plan = std::move(rebuilt);
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  int budget = config_.max_num_batched_tokens;
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    const int end = ChunkEnd(*s, budget);
    bool fits = true;
    while (!kv_.Grow(&s->blocks, end)) {
      // Preempt the latest admitted sequence (never one already planned: they come before i).
      Sequence* victim = running_.back();
      running_.pop_back();
      Preempt(victim);
      preempted = true;
      if (victim == s) {
        fits = false;
        break;
      }
    }
    if (!fits) break;
    budget -= end - s->num_computed;
    AddToPlan(s, end, &plan);
  }
  // As vLLM: no admissions in a step that had to preempt, unless nothing else would run.
  if (preempted && !plan.empty()) return plan;
  for (auto it = waiting_.begin();
       it != waiting_.end() && budget > 0 &&
       static_cast<int>(running_.size()) < config_.max_num_seqs;) {
    Sequence* s = *it;
    if (!Eligible(*s)) {
      ++it;
      continue;
    }
    if (!Admit(s, budget, &plan)) break;  // first come first served: no overtaking on KV
    budget -= plan.entries.back().num_new;
    it = waiting_.erase(it);
  }
  return plan;
}

// Starts a waiting sequence: prefix-cache lookup, slot, blocks for its first chunk.
bool Scheduler::Admit(Sequence* s, int budget, StepPlan* plan) {
  PrefixHit hit;
  if (prefix_caching_) {
    const int lookup_blocks = (s->length() - 1) / kv_.block_size();
    std::vector<BlockKey> keys = Keys(*s, lookup_blocks);
    hit = kv_.FindPrefix(keys);
  }
  kv_.Acquire(hit.blocks);
  s->blocks = hit.blocks;
  s->num_computed = hit.num_tokens;
  const int end = ChunkEnd(*s, budget);
  if (!kv_.Grow(&s->blocks, end)) {
    kv_.Release(&s->blocks);
    s->num_computed = 0;
    return false;
  }
  s->slot = kv_.AllocateSlot();  // running_ < max_num_seqs <= sequence slots
  s->cached_blocks = hit.blocks;
  if (hit.snapshot_slot >= 0) plan->slot_copies.push_back({hit.snapshot_slot, s->slot});
  s->status = SeqStatus::kRunning;
  if (prefix_caching_) {
    metrics_.prefix_cache_queries += static_cast<uint64_t>(s->length());
    metrics_.prefix_cache_hits += static_cast<uint64_t>(hit.num_tokens);
  }
  if (!s->started) {
    s->started = true;
    s->num_cached_prompt_tokens = hit.num_tokens;
  }
  RequestState& r = *s->request;
  if (!r.started) {
    r.started = true;
    --waiting_requests_;
    metrics_.prompt_tokens += r.request.prompt.size();
    metrics_.queue_seconds.Observe(Seconds(Clock::now() - r.arrival));
  }
  running_.push_back(s);
  AddToPlan(s, end, plan);
  return true;
}

void Scheduler::Preempt(Sequence* s) {
  kv_.Release(&s->blocks);
  kv_.FreeSlot(s->slot);
  s->slot = -1;
  s->num_computed = 0;
  s->cached_blocks.clear();
  s->status = SeqStatus::kWaiting;
  waiting_.push_front(s);
  ++metrics_.preemptions;
}

// ---- after the step ----

// Keys of the first `num_blocks` full blocks; they view `s`'s storage until its next growth.
std::vector<BlockKey> Scheduler::Keys(Sequence& s, int num_blocks) {
  const size_t bs = static_cast<size_t>(kv_.block_size());
  auto tokens = [&](size_t i) { return std::span<const int32_t>(s.tokens.data() + i * bs, bs); };
  while (static_cast<int>(s.block_hashes.size()) < num_blocks) {
    const size_t i = s.block_hashes.size();
    const uint64_t parent = i > 0 ? s.block_hashes.back() : 0;
    s.block_extras.push_back(BlockExtraKey(s.request->request, static_cast<int>(i), kv_.block_size()));
    s.block_hashes.push_back(HashBlock(parent, tokens(i), s.block_extras.back()));
  }
  std::vector<BlockKey> keys;
  keys.reserve(static_cast<size_t>(num_blocks));
  for (size_t i = 0; i < static_cast<size_t>(num_blocks); ++i) {
    keys.push_back({s.block_hashes[i], tokens(i), s.block_extras[i]});
  }
  return keys;
}

// Offers the blocks the step filled to the prefix cache, and snapshots the sliding state at
// snapshot points (attached to the cached block that holds the content, which may be an equal
// block computed earlier by another sequence).
void Scheduler::CacheBlocks(Sequence& s, StepResult* out) {
  if (!prefix_caching_) return;
  const int bs = kv_.block_size();
  const int full = std::min(s.num_computed / bs, static_cast<int>(s.blocks.size()));
  const int done = static_cast<int>(s.cached_blocks.size());
  if (full <= done) return;
  std::vector<BlockKey> keys = Keys(s, full);
  for (int i = done; i < full; ++i) {
    const int32_t parent = i > 0 ? s.cached_blocks[static_cast<size_t>(i - 1)] : -1;
    const bool chain_intact = i == 0 || parent >= 0;
    s.cached_blocks.push_back(
        chain_intact ? kv_.Register(s.blocks[static_cast<size_t>(i)], parent, keys[static_cast<size_t>(i)])
                     : -1);
  }
  const int32_t last = s.cached_blocks.back();
  if (snapshots_ && last >= 0 && s.num_computed % bs == 0 &&
      SnapshotPointAfter(s, s.num_computed - 1) == s.num_computed) {
    const int slot = kv_.ReserveSnapshot(last);
    if (slot >= 0) out->slot_copies.push_back({s.slot, slot});
  }
}

void Scheduler::Update(const StepPlan& plan, std::vector<float>& logits,
                       const DeviceSamples* device, StepResult* out) {
  const size_t vocab = static_cast<size_t>(model_.vocab_size);
  ++metrics_.steps;
  for (const ScheduledSequence& e : plan.entries) {
    Sequence& s = *e.seq;
    s.num_computed += e.num_new;
    metrics_.computed_tokens += static_cast<uint64_t>(e.num_new);
    CacheBlocks(s, out);
    if (e.logits_row < 0) continue;
    const size_t row = static_cast<size_t>(e.logits_row);
    if (device && row < device->picked.size() && device->picked[row]) {
      const Request& req = s.request->request;
      const float lp = req.logprobs && row < device->logprobs.size() ? device->logprobs[row] : 0.0f;
      Emit(s, device->ids[row], req, lp, {}, out);
    } else {
      SampleNext(s, std::span<float>(logits.data() + row * vocab, vocab), out);
    }
  }
  CollectFinished();
}

void Scheduler::SampleNext(Sequence& s, std::span<float> row, StepResult* out) {
  const Request& req = s.request->request;
  std::vector<float> raw;
  if (req.logprobs) raw.assign(row.begin(), row.end());
  for (int32_t id : s.stop.ids_to_mask(s.num_output())) {
    row[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
  }
  if (s.constraint) s.constraint->Mask(row);
  const int32_t token = s.sampler.SampleInPlace(row);
  if (s.constraint) s.constraint->Accept(token);
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
  if (req.logprobs) {
    Logprobs lp = ComputeLogprobs(raw, token, req.top_logprobs);
    logprob = lp.chosen;
    top = std::move(lp.top);
  }
  Emit(s, token, req, logprob, std::move(top), out);
}

// Records the sequence's next token and its event; ends the sequence when a stop rule says so.
void Scheduler::Emit(Sequence& s, int32_t token, const Request& req, float logprob,
                     std::vector<TokenLogprob> top_logprobs, StepResult* out) {
  s.tokens.push_back(token);
  ++metrics_.generation_tokens;

  const Clock::time_point now = Clock::now();
  RequestState& r = *s.request;
  if (!r.got_first_token) {
    r.got_first_token = true;
    metrics_.ttft_seconds.Observe(Seconds(now - r.arrival));
  }
  if (s.num_output() > 1) metrics_.inter_token_seconds.Observe(Seconds(now - s.last_token_time));
  s.last_token_time = now;

  TokenEvent ev;
  ev.request_id = r.id;
  ev.index = s.index;
  ev.token = token;
  if (req.logprobs) {
    ev.logprob = logprob;
    ev.top_logprobs = std::move(top_logprobs);
  }
  const StopResult stop = s.stop.Check(token, s.num_output(), s.length());
  if (stop.reason == FinishReason::kNone) {
    out->events.push_back({r.stream, std::move(ev)});
    return;
  }
  ev.finish = stop.reason;
  ev.stop_token = stop.stop_token;
  ev.stop_string = stop.stop_string;
  ev.stop_text_offset = stop.text_offset;
  Finish(&s, std::move(ev), out);
}

void Scheduler::Finish(Sequence* s, TokenEvent event, StepResult* out) {
  if (s->status == SeqStatus::kFinished) return;
  if (s->status == SeqStatus::kRunning) std::erase(running_, s);
  if (s->status == SeqStatus::kWaiting) std::erase(waiting_, s);
  kv_.Release(&s->blocks);
  kv_.FreeSlot(s->slot);
  s->slot = -1;
  s->status = SeqStatus::kFinished;
  RequestState& r = *s->request;
  event.request_id = r.id;
  event.index = s->index;
  event.num_prompt_tokens = s->num_prompt;
  event.num_cached_prompt_tokens = s->num_cached_prompt_tokens;
  event.num_output_tokens = s->num_output();
  ++metrics_.finished_sequences[static_cast<size_t>(event.finish)];
  out->events.push_back({r.stream, std::move(event)});
  if (--r.unfinished == 0) {
    if (!r.started) --waiting_requests_;
    metrics_.e2e_seconds.Observe(Seconds(Clock::now() - r.arrival));
    finished_requests_.push_back(r.id);
  }
}

void Scheduler::CollectFinished() {
  for (RequestId id : finished_requests_) requests_.erase(id);
  finished_requests_.clear();
}

void Scheduler::Fail(const StepPlan& plan, const std::string& error, StepResult* out) {
  for (const ScheduledSequence& e : plan.entries) {
    TokenEvent ev;
    ev.finish = FinishReason::kError;
    ev.error = error;
    Finish(e.seq, std::move(ev), out);
  }
  CollectFinished();
}

void Scheduler::Abort(RequestId id, FinishReason reason, const std::string& error,
                      StepResult* out) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;  // finished already, or never existed
  for (auto& s : it->second->sequences) {
    TokenEvent ev;
    ev.finish = reason;
    ev.error = error;
    Finish(s.get(), std::move(ev), out);
  }
  CollectFinished();
}

void Scheduler::AbortAll(FinishReason reason, const std::string& error, StepResult* out) {
  std::vector<RequestId> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (RequestId id : ids) Abort(id, reason, error, out);
}

EngineMetrics Scheduler::metrics() const {
  EngineMetrics m = metrics_;
  m.num_running_seqs = static_cast<int>(running_.size());
  m.num_waiting_seqs = static_cast<int>(waiting_.size());
  m.num_waiting_requests = waiting_requests_;
  m.kv_blocks_used = kv_.num_used_blocks();
  m.kv_blocks_total = kv_.num_blocks();
  m.kv_blocks_cached = kv_.num_cached_blocks();
  m.prefix_snapshots = kv_.num_snapshots();
  return m;
}

}  // namespace gs
