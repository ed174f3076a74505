// The engine's TextDecoder over our tokenizer: each sequence's output text comes from a
// StreamingDetokenizer, so the stop-string offsets the engine reports index exactly the text the
// server's own per-choice detokenizer produces for the same tokens.
#pragma once

#include <memory>

#include "engine/text_decoder.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

class TokenizerTextDecoder : public TextDecoder {
 public:
  // `tokenizer` must outlive this decoder and every stream it made.
  explicit TokenizerTextDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::unique_ptr<TextStream> NewStream(bool skip_special_tokens) const override;

 private:
  const Tokenizer& tokenizer_;
};

}  // namespace gs::server
