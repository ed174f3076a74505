#include "server/generation_job.h"

#include <algorithm>

namespace gs::server {

std::optional<ApiError> GenerationJob::Start(Engine& engine, std::vector<Request> requests,
                                             const ChoiceConfig& config,
                                             std::unique_ptr<GenerationJob>* out) {
  const int n = requests.empty() ? 1 : requests.front().n;
  std::unique_ptr<GenerationJob> job(new GenerationJob(engine, n));
  job->queue_ = std::make_shared<Queue>();
  for (size_t p = 0; p < requests.size(); ++p) {
    for (int i = 0; i < n; ++i) job->choices_.push_back(std::make_unique<ChoiceDecoder>(config));
  }
  job->cached_tokens_.assign(requests.size(), 0);
  for (size_t p = 0; p < requests.size(); ++p) {
    Request r = requests[p];
    // Runs on the engine thread: only a queue push. The queue is shared so that a callback
    // arriving after the job is gone still has somewhere to go.
    std::shared_ptr<Queue> q = job->queue_;
    const int prompt_index = static_cast<int>(p);
    r.on_event = [q, prompt_index](const TokenEvent& e) {
      {
        std::lock_guard<std::mutex> lock(q->mu);
        q->events.emplace_back(prompt_index, e);
      }
      q->cv.notify_one();
    };
    SubmitError kind = SubmitError::kNone;
    auto handle = engine.Submit(std::move(r), &kind);
    if (!handle) {
      job->Cancel();  // the earlier prompts of this request
      job->finished_choices_ = job->num_choices();
      const std::string& msg = handle.error().message;
      switch (kind) {
        case SubmitError::kOverloaded: return TooManyRequests(msg);
        case SubmitError::kShuttingDown: return Unavailable("the server is shutting down");
        default: return BadRequest(msg);
      }
    }
    job->ids_.push_back((*handle)->id());
    job->requests_.push_back(std::move(requests[p]));
  }
  *out = std::move(job);
  return std::nullopt;
}

GenerationJob::~GenerationJob() {
  if (!done()) Cancel();
}

void GenerationJob::Cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  for (RequestId id : ids_) engine_.Cancel(id);
}

std::vector<std::pair<int, ChoiceDelta>> GenerationJob::Poll(std::chrono::milliseconds timeout) {
  std::deque<std::pair<int, TokenEvent>> events;
  {
    std::unique_lock<std::mutex> lock(queue_->mu);
    queue_->cv.wait_for(lock, timeout, [&] { return !queue_->events.empty(); });
    events.swap(queue_->events);
  }
  std::vector<std::pair<int, ChoiceDelta>> out;
  for (auto& [prompt, e] : events) {
    const int index = prompt * n_ + e.index;
    if (index < 0 || index >= num_choices()) continue;
    ChoiceDecoder& choice = *choices_[static_cast<size_t>(index)];
    if (choice.finished()) continue;
    cached_tokens_[static_cast<size_t>(prompt)] =
        std::max(cached_tokens_[static_cast<size_t>(prompt)], e.num_cached_prompt_tokens);
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& d) { return d.first == index; });
    if (it == out.end()) {
      out.emplace_back(index, ChoiceDelta{});
      it = out.end() - 1;
    }
    choice.Add(e, &it->second);
    if (choice.finished()) ++finished_choices_;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

Usage GenerationJob::usage() const {
  Usage u;
  for (size_t p = 0; p < requests_.size(); ++p) {
    u.prompt_tokens += static_cast<int64_t>(requests_[p].prompt.size());
    u.cached_tokens += cached_tokens_[p];
  }
  for (const auto& c : choices_) u.completion_tokens += c->num_tokens();
  return u;
}

bool GenerationJob::WaitAll(const std::function<void(int, ChoiceDelta&)>& take,
                            const std::function<bool()>& gone) {
  // Short polls so that a vanished client is noticed within ~0.1 s.
  constexpr auto kPoll = std::chrono::milliseconds(100);
  while (!done()) {
    if (gone && gone()) {
      Cancel();
      return false;
    }
    for (auto& [index, d] : Poll(kPoll)) take(index, d);
  }
  return true;
}

}  // namespace gs::server
