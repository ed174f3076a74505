#include "engine/request.h"

namespace gs {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "";
}

std::vector<TokenEvent> RequestStream::Read(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty() || unfinished_ == 0; });
  std::vector<TokenEvent> out(std::make_move_iterator(events_.begin()),
                              std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

bool RequestStream::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unfinished_ == 0 && events_.empty();
}

void RequestStream::Push(TokenEvent event) {
  const bool last = event.finish != FinishReason::kNone;
  if (on_event_) on_event_(event);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (last) --unfinished_;
    if (!on_event_) events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

}  // namespace gs
