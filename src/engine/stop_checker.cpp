#include "engine/stop_checker.h"

#include <algorithm>

namespace gs {

StopChecker::StopChecker(StopRules rules, const TextDecoder* decoder) : rules_(std::move(rules)) {
  for (const std::string& s : rules_.stop_strings) longest_stop_ = std::max(longest_stop_, s.size());
  if (!rules_.stop_strings.empty() && decoder) text_ = decoder->NewStream(rules_.skip_special_tokens);
  if (!text_) rules_.stop_strings.clear();  // the engine refuses such requests beforehand
}

const std::vector<int32_t>& StopChecker::ids_to_mask(int num_output) const {
  static const std::vector<int32_t> kNone;
  return num_output < rules_.min_tokens ? rules_.stop_ids : kNone;
}

StopResult StopChecker::Check(int32_t token, int num_output, int length) {
  StopResult r;
  const bool may_stop = num_output > rules_.min_tokens;
  if (may_stop && std::ranges::find(rules_.stop_ids, token) != rules_.stop_ids.end()) {
    r.reason = FinishReason::kStop;
    r.stop_token = token;
    return r;
  }
  // The text is kept up to date even before min_tokens so offsets stay right.
  if (!rules_.stop_strings.empty() && FindStopString(text_->Push(token), &r) && may_stop) {
    r.reason = FinishReason::kStop;
    return r;
  }
  r = StopResult{};
  if (num_output >= rules_.max_tokens || length >= rules_.max_model_len) {
    r.reason = FinishReason::kLength;
  }
  return r;
}

// Searches only where a match could end inside the new text: from (longest stop - 1) bytes
// before it. The earliest match wins.
bool StopChecker::FindStopString(const std::string& text, StopResult* result) {
  const size_t old_size = tail_.size();
  tail_ += text;
  size_t best = std::string::npos;
  for (const std::string& stop : rules_.stop_strings) {
    const size_t from = old_size >= stop.size() - 1 ? old_size - (stop.size() - 1) : 0;
    const size_t at = tail_.find(stop, from);
    if (at != std::string::npos && at < best) {
      best = at;
      result->stop_string = stop;
    }
  }
  if (best != std::string::npos) result->text_offset = tail_offset_ + best;
  if (tail_.size() > longest_stop_) {
    const size_t drop = tail_.size() - (longest_stop_ - 1);
    tail_.erase(0, drop);
    tail_offset_ += drop;
  }
  return best != std::string::npos;
}

}  // namespace gs
