#include "engine/engine.h"

#include <algorithm>
#include <unordered_map>

#include "engine/device_sampling.h"
#include "vision/encode_groups.h"
#include "vision/image_hash.h"

namespace gs {
namespace {

constexpr int kMaxN = 256;
constexpr int kMaxTopLogprobs = 20;

}  // namespace

KvCacheSpec EngineKvSpec(const EngineConfig& config, int num_global_blocks, int prefix_snapshots,
                         int block_size) {
  KvCacheSpec spec;
  spec.max_sequences = config.max_num_seqs + std::max(0, prefix_snapshots);
  spec.block_size = block_size;
  spec.num_global_blocks = num_global_blocks;
  return spec;
}

std::string EngineInfo::Describe() const {
  std::string s = StrCat("KV cache: ", num_blocks, " blocks x ", block_size, " = ",
                         kv_capacity_tokens, " tokens of global-layer KV; ", max_num_seqs,
                         " sequences at once (", kv_capacity_tokens / std::max(1, max_model_len),
                         " at max_model_len ", max_model_len, "); ", max_num_batched_tokens,
                         " tokens per step; prefix caching ", prefix_caching ? "on" : "off");
  if (prefix_caching) s += StrCat(" (", prefix_snapshot_slots, " sliding-state snapshot slots)");
  if (!note.empty()) s += StrCat("; ", note);
  return s;
}

Expected<std::unique_ptr<Engine>> Engine::Create(ModelRunner& runner, const EngineConfig& config) {
  const ModelConfig& model = runner.config();
  const KvCacheSpec& spec = runner.kv_spec();
  if (config.max_num_seqs < 1) return MakeError("engine: max_num_seqs ", config.max_num_seqs, " must be >= 1");
  if (config.max_num_batched_tokens < 1) {
    return MakeError("engine: max_num_batched_tokens ", config.max_num_batched_tokens, " must be >= 1");
  }
  if (config.max_waiting_requests < 1) {
    return MakeError("engine: max_waiting_requests ", config.max_waiting_requests, " must be >= 1");
  }
  if (spec.max_sequences < config.max_num_seqs) {
    return MakeError("engine: the runner has ", spec.max_sequences, " KV slots but max_num_seqs is ",
                     config.max_num_seqs, " (build the runner with EngineKvSpec)");
  }
  if (spec.block_size < 1 || spec.num_global_blocks < 1) {
    return MakeError("engine: the runner's KV pool (", spec.num_global_blocks, " blocks of ",
                     spec.block_size, ") is empty");
  }
  EngineInfo info;
  info.block_size = spec.block_size;
  info.num_blocks = spec.num_global_blocks;
  info.kv_capacity_tokens = spec.block_size * spec.num_global_blocks;
  info.max_num_seqs = config.max_num_seqs;
  info.max_num_batched_tokens = config.max_num_batched_tokens;
  const int limit = std::min(model.max_position_embeddings, info.kv_capacity_tokens);
  if (config.max_model_len > limit) {
    return MakeError("engine: max_model_len ", config.max_model_len, " exceeds what fits: ",
                     "max_position_embeddings ", model.max_position_embeddings,
                     ", KV pool ", info.kv_capacity_tokens, " tokens");
  }
  if (config.max_model_len < 0) return MakeError("engine: max_model_len ", config.max_model_len, " < 0");
  info.max_model_len = config.max_model_len > 0 ? config.max_model_len : limit;
  if (info.max_model_len < 2) return MakeError("engine: max_model_len ", info.max_model_len, " < 2");

  KvCacheOptions kv;
  kv.num_sequence_slots = config.max_num_seqs;
  kv.needs_snapshots = model.num_layers_of(LayerKind::kSliding) > 0;
  kv.prefix_caching = config.enable_prefix_caching;
  const int spare = spec.max_sequences - config.max_num_seqs;
  if (kv.prefix_caching && kv.needs_snapshots && !runner.supports_slot_copy()) {
    kv.prefix_caching = false;
    info.note = "prefix caching off: the runner cannot copy sliding-window state";
  } else if (kv.prefix_caching && kv.needs_snapshots && spare == 0) {
    kv.prefix_caching = false;
    info.note = "prefix caching off: the runner has no spare KV slots for sliding-state snapshots";
  }
  info.prefix_caching = kv.prefix_caching;
  info.prefix_snapshot_slots = kv.prefix_caching && kv.needs_snapshots ? spare : 0;
  return std::unique_ptr<Engine>(new Engine(runner, config, info, kv));
}

Engine::Engine(ModelRunner& runner, const EngineConfig& config, const EngineInfo& info,
               const KvCacheOptions& kv_options)
    : runner_(runner),
      config_(config),
      info_(info),
      scheduler_(
          SchedulerConfig{
              config.max_num_seqs, config.max_num_batched_tokens, info.max_model_len,
              (std::max(0, config.prefix_snapshot_interval) + info.block_size - 1) / info.block_size *
                  info.block_size},
          runner.kv_spec(), kv_options, runner.config()) {
  for (int id : runner.config().eos_token_ids) {
    if (id >= 0 && id < runner.config().vocab_size) eos_ids_.push_back(id);
  }
  published_ = scheduler_.metrics();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(ShutdownMode::kCancel); }

// ---- the caller's side ----

Status Engine::Validate(const Request& r) const {
  const ModelConfig& model = runner_.config();
  const int prompt = static_cast<int>(r.prompt.size());
  if (r.prompt.empty()) return MakeError("request: the prompt is empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= model.vocab_size) {
      return MakeError("request: prompt token ", i, " (id ", r.prompt[i], ") is outside the vocabulary [0, ",
                       model.vocab_size, ")");
    }
  }
  if (prompt >= info_.max_model_len) {
    return MakeError("request: the prompt has ", prompt, " tokens; max_model_len is ",
                     info_.max_model_len, " (prompt + at least one generated token)");
  }
  if (r.max_tokens) {
    if (*r.max_tokens < 1) return MakeError("request: max_tokens ", *r.max_tokens, " must be >= 1");
    if (prompt + int64_t{*r.max_tokens} > info_.max_model_len) {
      return MakeError("request: prompt (", prompt, " tokens) + max_tokens (", *r.max_tokens,
                       ") exceeds max_model_len ", info_.max_model_len);
    }
  }
  const int max_tokens = r.max_tokens.value_or(info_.max_model_len - prompt);
  if (r.min_tokens < 0 || r.min_tokens > max_tokens) {
    return MakeError("request: min_tokens ", r.min_tokens, " is outside [0, max_tokens ", max_tokens, "]");
  }
  if (r.n < 1 || r.n > kMaxN) return MakeError("request: n ", r.n, " is outside [1, ", kMaxN, "]");
  if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs) {
    return MakeError("request: top_logprobs ", r.top_logprobs, " is outside [0, ", kMaxTopLogprobs, "]");
  }
  for (int32_t id : r.stop_token_ids) {
    if (id < 0 || id >= model.vocab_size) {
      return MakeError("request: stop_token_ids entry ", id, " is outside the vocabulary");
    }
  }
  for (const std::string& s : r.stop) {
    if (s.empty()) return MakeError("request: a stop string is empty");
  }
  if (!r.stop.empty() && !config_.text_decoder) {
    return MakeError("request: stop strings need a text decoder (EngineConfig::text_decoder)");
  }
  for (const ContentHash& c : r.content_hashes) {
    if (c.start < 0 || c.length < 1 || int64_t{c.start} + c.length > prompt) {
      return MakeError("request: content hash span [", c.start, ", +", c.length,
                       ") is outside the prompt of ", prompt, " tokens");
    }
  }
  GS_RETURN_IF_ERROR(ValidateImages(r));
  Status st = ValidateSamplingParams(r.sampling, model.vocab_size);
  if (!st) return MakeError("request: ", st.error().message);
  return Ok();
}

// Each image: a well-formed preprocessed image whose soft tokens sit on image-token ids inside the
// prompt, in order, and a runner that can encode it.
Status Engine::ValidateImages(const Request& r) const {
  if (r.images.empty()) return Ok();
  if (!runner_.supports_vision()) {
    return MakeError("request: this model/runner has no vision support (the request has ",
                     r.images.size(), " image(s))");
  }
  const ModelConfig& model = runner_.config();
  const int prompt = static_cast<int>(r.prompt.size());
  int prev_end = 0;
  for (size_t i = 0; i < r.images.size(); ++i) {
    const RequestImage& im = r.images[i];
    if (!im.image) return MakeError("request: image ", i, " has no pixels");
    const ProcessedImage& p = *im.image;
    const int pool = p.pooling_kernel_size;
    if (p.num_soft_tokens < 1 || pool < 1 || p.num_patches() != p.num_soft_tokens * pool * pool ||
        p.pixel_values.size() != static_cast<size_t>(p.num_patches()) * p.patch_dim() ||
        p.position_x.size() != static_cast<size_t>(p.num_patches()) ||
        p.position_y.size() != static_cast<size_t>(p.num_patches())) {
      return MakeError("request: image ", i, " is not a consistent preprocessed image (",
                       p.num_soft_tokens, " soft tokens, ", p.patches_h, "x", p.patches_w,
                       " patches, ", p.pixel_values.size(), " pixel values)");
    }
    if (im.first_token < prev_end || int64_t{im.first_token} + p.num_soft_tokens > prompt) {
      return MakeError("request: image ", i, " (prompt tokens ", im.first_token, "..",
                       int64_t{im.first_token} + p.num_soft_tokens,
                       ") overlaps the previous image or leaves the prompt of ", prompt, " tokens");
    }
    for (int t = im.first_token; t < im.end(); ++t) {
      if (r.prompt[static_cast<size_t>(t)] != model.image_token_id) {
        return MakeError("request: prompt token ", t, " (id ", r.prompt[static_cast<size_t>(t)],
                         ") inside image ", i, " is not the image token ", model.image_token_id);
      }
    }
    prev_end = im.end();
  }
  return Ok();
}

std::unique_ptr<RequestState> Engine::MakeState(Request request, RequestId id) {
  auto state = std::make_unique<RequestState>();
  state->id = id;
  state->arrival = Clock::now();
  state->stream = std::make_shared<RequestStream>(id, request.n, request.on_event);
  state->unfinished = request.n;
  state->image_embeddings.resize(request.images.size());
  StopRules rules;
  if (!request.ignore_eos) rules.stop_ids = eos_ids_;
  rules.stop_ids.insert(rules.stop_ids.end(), request.stop_token_ids.begin(), request.stop_token_ids.end());
  rules.stop_strings = request.stop;
  rules.skip_special_tokens = request.skip_special_tokens;
  rules.min_tokens = request.min_tokens;
  rules.max_tokens = request.max_tokens.value_or(info_.max_model_len - static_cast<int>(request.prompt.size()));
  rules.max_model_len = info_.max_model_len;
  for (int i = 0; i < request.n; ++i) {
    SamplingParams params = request.sampling;
    params.seed = *request.sampling.seed + static_cast<uint64_t>(i);  // vLLM: seed + index
    state->sequences.push_back(std::make_unique<Sequence>(
        state.get(), i, request.prompt, params, StopChecker(rules, config_.text_decoder)));
    if (request.constraint) state->sequences.back()->constraint = request.constraint();
  }
  state->request = std::move(request);
  return state;
}

Expected<RequestHandle> Engine::Submit(Request request, SubmitError* error_kind) {
  auto fail = [&](SubmitError kind, Error e) -> Expected<RequestHandle> {
    if (error_kind) *error_kind = kind;
    return e;
  };
  if (error_kind) *error_kind = SubmitError::kNone;
  Status st = Validate(request);
  if (!st) return fail(SubmitError::kInvalidRequest, st.take_error());
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return fail(SubmitError::kShuttingDown, MakeError("engine: shutting down"));
  const int waiting = static_cast<int>(incoming_.size()) + waiting_in_scheduler_;
  if (waiting >= config_.max_waiting_requests) {
    return fail(SubmitError::kOverloaded,
                MakeError("engine overloaded: ", waiting, " requests waiting (max_waiting_requests ",
                          config_.max_waiting_requests, ")"));
  }
  if (!request.sampling.seed) request.sampling.seed = seeds_();
  // Hashed here, on the caller's thread: the engine thread only schedules and runs the model.
  for (const RequestImage& im : request.images) {
    request.content_hashes.push_back(
        {im.first_token, im.image->num_soft_tokens, "image:" + ImageContentHash(*im.image)});
  }
  auto state = MakeState(std::move(request), next_id_++);
  RequestHandle handle = state->stream;
  incoming_.push_back(std::move(state));
  lock.unlock();
  cv_.notify_one();
  return handle;
}

void Engine::Cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_one();
}

void Engine::Shutdown(ShutdownMode mode) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A later kCancel overrides a drain in progress.
    if (!shutdown_ || mode == ShutdownMode::kCancel) shutdown_ = mode;
  }
  cv_.notify_one();
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

EngineMetrics Engine::Metrics() const {
  std::lock_guard<std::mutex> lock(metrics_mu_);
  return published_;
}

// ---- the engine thread ----

void Engine::Loop() {
  for (;;) {
    std::vector<std::unique_ptr<RequestState>> incoming;
    std::vector<RequestId> cancels;
    std::optional<ShutdownMode> shutdown;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return shutdown_ || !incoming_.empty() || !cancels_.empty() || scheduler_.has_work();
      });
      incoming.swap(incoming_);
      cancels.swap(cancels_);
      shutdown = shutdown_;
      waiting_in_scheduler_ += static_cast<int>(incoming.size());
    }
    StepResult result;
    for (auto& r : incoming) scheduler_.Add(std::move(r));
    for (RequestId id : cancels) scheduler_.Abort(id, FinishReason::kAbort, "", &result);
    if (shutdown == ShutdownMode::kCancel) {
      scheduler_.AbortAll(FinishReason::kAbort, "engine shut down", &result);
    }
    if (scheduler_.has_work()) Step(&result);
    // Metrics first: a caller that saw its last event then reads metrics that include it.
    Publish();
    Deliver(result);
    if (shutdown && !scheduler_.has_work()) break;
  }
}

void Engine::Step(StepResult* out) {
  StepResult& result = *out;
  StepPlan plan = scheduler_.Schedule();
  std::string error;
  if (plan.empty()) {
    // Cannot happen while the KV pool holds max_model_len; never spin or hang if it does.
    scheduler_.AbortAll(FinishReason::kError, "engine: no sequence could be scheduled", &result);
  } else if (!AttachImages(&plan, &result)) {
    // Every sequence of the step belonged to requests whose image failed to encode.
  } else if (!RunCopies(plan.slot_copies, &error)) {
    scheduler_.Fail(plan, error, &result);
  } else if (Status st = RunModel(plan); !st) {
    scheduler_.Fail(plan, StrCat("forward step failed: ", st.error().message), &result);
  } else {
    ReleaseImages(plan);
    scheduler_.Update(plan, logits_, device_step_ ? &device_samples_ : nullptr, &result);
    if (!RunCopies(result.slot_copies, &error)) {
      // A snapshot that was not taken must not be used: drop every snapshot slot touched.
      for (const auto& [src, dst] : result.slot_copies) scheduler_.ForgetSnapshot(dst);
    }
  }
}

Status Engine::RunModel(const StepPlan& plan) {
  const size_t rows = plan.batch.logits_indices.size();
  // A step of prefill chunks only (no token to pick) runs as before.
  device_step_ = runner_.samples_on_device() && rows > 0;
  if (!device_step_) return runner_.Forward(plan.batch, &logits_);
  std::vector<GpuSamplingParams> per_row(rows);  // greedy for rows sampled here (result unused)
  DeviceSamples& d = device_samples_;
  d.picked.assign(rows, 0);
  bool host_rows = false, want_logprobs = false;
  for (const ScheduledSequence& e : plan.entries) {
    if (e.logits_row < 0) continue;
    const size_t row = static_cast<size_t>(e.logits_row);
    if (std::optional<GpuSamplingParams> g = DeviceSamplingFor(*e.seq)) {
      per_row[row] = *g;
      d.picked[row] = 1;
      want_logprobs |= e.seq->request->request.logprobs;
    } else {
      host_rows = true;
    }
  }
  d.logprobs.clear();
  return runner_.ForwardSample(plan.batch, per_row, &d.ids, want_logprobs ? &d.logprobs : nullptr,
                               host_rows ? &logits_ : nullptr);
}

// One encoder pass over `group` (images of requests without embeddings for them). When the pass
// fails, its images are encoded one at a time so that only the requests whose own image fails
// end with that image's error.
void Engine::EncodeGroup(std::span<const std::pair<RequestState*, int>> group,
                         std::vector<std::pair<RequestId, std::string>>* failed) {
  const size_t hidden = static_cast<size_t>(runner_.config().hidden_size);
  auto image_of = [](const std::pair<RequestState*, int>& g) -> const ProcessedImage& {
    return *g.first->request.images[static_cast<size_t>(g.second)].image;
  };
  // Stores one image's result; false (and a failure of its request) when it is unusable.
  auto take = [&](const std::pair<RequestState*, int>& g, Expected<std::vector<float>> e) {
    const size_t want = static_cast<size_t>(image_of(g).num_soft_tokens) * hidden;
    if (e.ok() && e->size() == want) {
      g.first->image_embeddings[static_cast<size_t>(g.second)] = std::move(*e);
      ++images_encoded_;
      return;
    }
    const RequestId id = g.first->id;
    if (std::any_of(failed->begin(), failed->end(), [&](const auto& f) { return f.first == id; })) {
      return;  // the request already failed on another of its images
    }
    failed->emplace_back(id,
                         e.ok() ? StrCat("the vision encoder returned ", e->size(),
                                         " values for image ", g.second, ", expected ", want)
                                : StrCat("encoding image ", g.second, " failed: ",
                                         e.error().message));
  };
  std::vector<const ProcessedImage*> images;
  for (const auto& g : group) images.push_back(&image_of(g));
  if (group.size() > 1) {
    Expected<std::vector<std::vector<float>>> all = runner_.EncodeImages(images);
    if (all.ok() && all->size() == group.size()) {
      for (size_t i = 0; i < group.size(); ++i) take(group[i], std::move((*all)[i]));
      return;
    }
  }
  for (const auto& g : group) {
    Expected<std::vector<std::vector<float>>> one = runner_.EncodeImages({&image_of(g)});
    if (!one.ok()) {
      take(g, one.error());
    } else if (one->size() != 1) {
      take(g, MakeError("the vision encoder returned ", one->size(), " images for 1"));
    } else {
      take(g, std::move(one->front()));
    }
  }
}

// Encodes the plan's images that have no embeddings now (first prefill, or again after a
// preemption) and points the batch's image spans at them. A request whose image fails to encode
// ends with an error and leaves the step; false when nothing is left to run.
bool Engine::AttachImages(StepPlan* plan, StepResult* out) {
  if (plan->images.empty()) return true;
  // Each image once (the sequences of an n > 1 request share their request's images), in plan
  // order, then through the encoder a pass at a time (vision/encode_groups.h bounds a pass).
  std::vector<std::pair<RequestState*, int>> todo;
  for (const PlannedImage& p : plan->images) {
    RequestState* r = p.seq->request;
    const std::pair<RequestState*, int> key{r, p.image};
    if (r->image_embeddings[static_cast<size_t>(p.image)].empty() &&
        std::find(todo.begin(), todo.end(), key) == todo.end()) {
      todo.push_back(key);
    }
  }
  std::vector<std::pair<RequestId, std::string>> failed;
  std::vector<int64_t> patches;
  for (const auto& [r, i] : todo) {
    patches.push_back(r->request.images[static_cast<size_t>(i)].image->num_patches());
  }
  for (const auto& [begin, end] : PlanEncodeGroups(patches)) {
    EncodeGroup(std::span(todo).subspan(begin, end - begin), &failed);
  }
  if (!failed.empty()) {
    std::vector<RequestId> ids;
    for (const auto& f : failed) ids.push_back(f.first);
    scheduler_.DropFromPlan(plan, ids);
    for (const auto& [id, why] : failed) scheduler_.Abort(id, FinishReason::kError, why, out);
  }
  const size_t hidden = static_cast<size_t>(runner_.config().hidden_size);
  for (const PlannedImage& p : plan->images) {
    const std::vector<float>& emb = p.seq->request->image_embeddings[static_cast<size_t>(p.image)];
    plan->batch.image_spans.push_back(
        {p.first_token, p.num_tokens,
         std::span<const float>(emb).subspan(static_cast<size_t>(p.offset) * hidden,
                                             static_cast<size_t>(p.num_tokens) * hidden)});
  }
  return !plan->empty();
}

// After a successful forward step (before Update, which may free finished requests): drops the
// embeddings of images that every sequence of their request has now prefilled past.
void Engine::ReleaseImages(const StepPlan& plan) {
  if (plan.images.empty()) return;
  std::unordered_map<const Sequence*, int> computed;  // after this step
  for (const ScheduledSequence& e : plan.entries) computed[e.seq] = e.seq->num_computed + e.num_new;
  for (const PlannedImage& p : plan.images) {
    RequestState& r = *p.seq->request;
    const int end = r.request.images[static_cast<size_t>(p.image)].end();
    bool all_past = true;
    for (const auto& s : r.sequences) {
      auto it = computed.find(s.get());
      const int done = it != computed.end() ? it->second : s->num_computed;
      all_past &= s->status == SeqStatus::kFinished || done >= end;
    }
    if (all_past) std::vector<float>().swap(r.image_embeddings[static_cast<size_t>(p.image)]);
  }
}

bool Engine::RunCopies(const std::vector<std::pair<int, int>>& copies, std::string* error) {
  for (const auto& [src, dst] : copies) {
    Status st = runner_.CopySlot(src, dst);
    if (!st) {
      *error = StrCat("KV slot copy failed: ", st.error().message);
      return false;
    }
  }
  return true;
}

void Engine::Deliver(StepResult& result) {
  for (Emitted& e : result.events) e.stream->Push(std::move(e.event));
  result.events.clear();
}

void Engine::Publish() {
  EngineMetrics m = scheduler_.metrics();
  m.images_encoded = images_encoded_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_in_scheduler_ = scheduler_.num_waiting_requests();
  }
  std::lock_guard<std::mutex> lock(metrics_mu_);
  published_ = std::move(m);
}

}  // namespace gs
