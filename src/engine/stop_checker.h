// When a sequence ends: a stop token (eos ids unless ignore_eos, plus stop_token_ids), a stop
// string anywhere in the output text (also across token boundaries; found once the text stream
// releases the text, which may be a token or two later for held-back bytes), max_tokens or
// max_model_len. Stop tokens and strings only count after min_tokens output tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/request.h"
#include "engine/text_decoder.h"

namespace gs {

struct StopRules {
  std::vector<int32_t> stop_ids;  // eos (unless ignore_eos) and stop_token_ids
  std::vector<std::string> stop_strings;
  bool skip_special_tokens = true;  // of the text stop strings are matched in
  int min_tokens = 0;
  int max_tokens = 0;
  int max_model_len = 0;
};

struct StopResult {
  FinishReason reason = FinishReason::kNone;
  int32_t stop_token = -1;
  std::string stop_string;
  size_t text_offset = 0;  // where the stop string starts in the output text
};

class StopChecker {
 public:
  // `decoder` is needed only when there are stop strings.
  StopChecker(StopRules rules, const TextDecoder* decoder);
  StopChecker(StopChecker&&) = default;
  StopChecker& operator=(StopChecker&&) = default;

  // The ids to mask out of the next token's logits while fewer than min_tokens were produced.
  const std::vector<int32_t>& ids_to_mask(int num_output) const;

  // After output token number `num_output` (1-based), the sequence now `length` tokens long.
  StopResult Check(int32_t token, int num_output, int length);

 private:
  bool FindStopString(const std::string& text, StopResult* result);

  StopRules rules_;
  std::unique_ptr<TextStream> text_;  // only with stop strings
  size_t longest_stop_ = 0;
  std::string tail_;         // the end of the output text, long enough to hold a stop string
  size_t tail_offset_ = 0;   // byte offset of tail_[0] in the output text
};

}  // namespace gs
