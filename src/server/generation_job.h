// One HTTP request's generation: its engine requests (one per prompt; each with n sequences),
// their events funnelled into one queue, and one ChoiceDecoder per choice
// (choice index = prompt index * n + sequence index, as vLLM numbers them). Destroying a job
// whose requests are still running cancels them, so a vanished client frees its KV.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "server/api_error.h"
#include "server/choice_decoder.h"

namespace gs::server {

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
};

class GenerationJob {
 public:
  // Submits every request (their on_event is replaced). If one is refused, the ones already
  // submitted are cancelled and the refusal becomes an ApiError (400 invalid, 429 queue full,
  // 503 shutting down).
  static std::optional<ApiError> Start(Engine& engine, std::vector<Request> requests,
                                       const ChoiceConfig& config,
                                       std::unique_ptr<GenerationJob>* out);
  ~GenerationJob();
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  // Waits up to `timeout` for events and returns the deltas of the choices they touched, in
  // choice order.
  std::vector<std::pair<int, ChoiceDelta>> Poll(std::chrono::milliseconds timeout);
  bool done() const { return finished_choices_ == num_choices(); }
  int num_choices() const { return static_cast<int>(choices_.size()); }
  const ChoiceDecoder& choice(int i) const { return *choices_[static_cast<size_t>(i)]; }
  const Request& request(int prompt_index) const { return requests_[prompt_index]; }
  int n() const { return n_; }
  Usage usage() const;
  // Ends every unfinished request (client gone). Idempotent.
  void Cancel();
  // Non-streaming answers: polls until every choice finished, handing each delta to `take`.
  // Returns false (having cancelled the job) as soon as `gone` reports the client left.
  bool WaitAll(const std::function<void(int, ChoiceDelta&)>& take,
               const std::function<bool()>& gone);

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<int, TokenEvent>> events;  // (prompt index, event)
  };
  GenerationJob(Engine& engine, int n) : engine_(engine), n_(n) {}

  Engine& engine_;
  const int n_;
  std::vector<Request> requests_;  // as submitted, without callbacks (prompt sizes, stops)
  std::vector<RequestId> ids_;
  std::shared_ptr<Queue> queue_;   // shared with the engine-thread callbacks
  std::vector<std::unique_ptr<ChoiceDecoder>> choices_;
  std::vector<int> cached_tokens_;  // per prompt
  int finished_choices_ = 0;
  bool cancelled_ = false;
};

}  // namespace gs::server
