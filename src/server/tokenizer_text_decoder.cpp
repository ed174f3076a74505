#include "server/tokenizer_text_decoder.h"

#include "tokenizer/streaming_detokenizer.h"

namespace gs::server {
namespace {

class DetokenizerStream : public TextStream {
 public:
  DetokenizerStream(const Tokenizer& tokenizer, bool skip_special)
      : detokenizer_(tokenizer, skip_special) {}
  std::string Push(int32_t id) override { return detokenizer_.Push(id); }

 private:
  StreamingDetokenizer detokenizer_;
};

}  // namespace

std::unique_ptr<TextStream> TokenizerTextDecoder::NewStream(bool skip_special_tokens) const {
  return std::make_unique<DetokenizerStream>(tokenizer_, skip_special_tokens);
}

}  // namespace gs::server
