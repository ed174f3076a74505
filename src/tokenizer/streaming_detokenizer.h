// Incremental detokenization for streamed generation. Push() returns the text that became final
// with this token; the concatenation of all Push() results and Flush() equals
// Tokenizer::Decode(all ids) exactly, and every returned piece is valid UTF-8.
//
// Byte-fallback tokens (<0xNN>) are held back until the run of byte tokens ends (the next
// ordinary token, or Flush): HF decodes a run as a whole and turns *every* byte of an invalid run
// into U+FFFD, so even a complete character cannot be released before the run is closed.
// Decoders whose output is not local to tokens (a Replace or trailing Strip after Fuse) are not
// streamable: then everything is returned by Flush().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gs {

class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  std::string Push(int32_t id);
  // Returns whatever is still held back and resets for a new sequence.
  std::string Flush();

 private:
  enum class Mode { kLocal, kJoinWithSpace, kHoldAll };
  bool IsByteToken(const std::string& s) const;
  std::string DecodePending();
  std::string LeadStrip(std::string text);

  const Tokenizer* tokenizer_;
  bool skip_special_;
  Mode mode_ = Mode::kLocal;
  Decoder local_;                 // the decoder minus a leading Strip after Fuse
  std::vector<DecoderStep> pre_byte_steps_;  // per-token steps before ByteFallback
  bool has_byte_fallback_ = false;
  char32_t lead_char_ = 0;
  size_t lead_strip_ = 0;         // leading characters the leading Strip may still remove
  size_t lead_strip_initial_ = 0;
  bool emitted_any_ = false;
  std::vector<int32_t> pending_;
};

}  // namespace gs
