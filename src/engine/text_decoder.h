// The one thing the engine needs from a tokenizer: each sequence's output text as it grows, so
// stop strings that span token boundaries can be found without the engine depending on
// tokenizer/. The tokenizer's StreamingDetokenizer has exactly this shape; the code that wires the
// server together adapts it (a TextDecoder whose NewStream() wraps a StreamingDetokenizer with
// skip_special_tokens as the request wants). Tests use fakes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace gs {

// One sequence's output text, token by token.
class TextStream {
 public:
  virtual ~TextStream() = default;
  // The text that became final with token `id`: possibly "" while a tokenizer holds back bytes of
  // an unfinished UTF-8 sequence, possibly more than this token's own text when it releases them.
  // The concatenation of the results is the output text that stop-string offsets refer to.
  virtual std::string Push(int32_t id) = 0;
};

class TextDecoder {
 public:
  virtual ~TextDecoder() = default;
  // A fresh stream for a new sequence (called from Engine::Submit's thread; the stream is then
  // used on the engine thread only).
  virtual std::unique_ptr<TextStream> NewStream(bool skip_special_tokens) const = 0;
};

}  // namespace gs
