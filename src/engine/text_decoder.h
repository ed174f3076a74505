// The one thing the engine needs from a tokenizer: the text each generated token adds, so stop
// strings that span token boundaries can be found without the engine depending on tokenizer/.
// The tokenizer module implements it; tests use a fake.
#pragma once

#include <cstdint>
#include <string>

namespace gs {

class TextDecoder {
 public:
  virtual ~TextDecoder() = default;

  // The bytes token `id` appends to the text of a generation when it follows other tokens: a
  // byte-fallback token gives its single (possibly incomplete UTF-8) byte, a token that the
  // output text does not show (special tokens) gives "". Called on the engine thread only.
  virtual std::string TokenText(int32_t id) const = 0;
};

}  // namespace gs
