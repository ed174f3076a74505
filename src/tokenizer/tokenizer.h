// Hugging Face tokenizer.json tokenizer (the BPE + byte-fallback pipeline Gemma 3 and Gemma 4
// ship), matching the HF `tokenizers` library id for id.
//
// Encode: added tokens are cut out of the raw text first (longest match, leftmost), the rest is
// normalized, searched again for `normalized` added tokens, pre-tokenized and run through BPE;
// with add_special_tokens the TemplateProcessing post-processor adds e.g. <bos>.
// Input that is not valid UTF-8 is repaired first: each maximal invalid subsequence becomes
// U+FFFD (what a client's UTF-8 decoder would have produced), so Encode never fails.
//
// Anything in tokenizer.json that this implementation does not support is a load error naming
// the component, never a silently different tokenization.
//
// Thread safety: a loaded Tokenizer is immutable apart from an internal, mutex-sharded cache of
// BPE chunk results; Encode/Decode may be called from many threads at once.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/components.h"
#include "util/status.h"

namespace gs {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory containing one.
  static Expected<Tokenizer> Load(const std::string& path);
  // Parses tokenizer.json text; `source` names it in errors.
  static Expected<Tokenizer> FromJson(std::string_view json, const std::string& source);

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const;
  // Unknown ids are skipped, as HF does.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t TokenToId(std::string_view token) const;  // -1 if absent
  std::string IdToToken(int32_t id) const;           // "" if absent
  // One past the largest id of the vocabulary and the added tokens (the embedding row count).
  size_t vocab_size() const { return static_cast<size_t>(id_limit_); }
  // Whether `id` is an added token marked special (what skip_special_tokens removes).
  bool IsSpecial(int32_t id) const;

  // For StreamingDetokenizer: the string the decoder sees for `id` (nullptr if unknown), and
  // whether skip_special_tokens drops it.
  const std::string* DecoderInput(int32_t id) const;
  bool SkippedWhenSkippingSpecial(int32_t id) const;
  const Decoder& decoder() const { return decoder_; }

  // Test hook: disables BPE chunking and the word cache (the plain HF algorithm).
  void set_fast_paths(bool on) { model_.set_fast_paths(on); }

 private:
  Status BuildAddedTokens(std::vector<AddedToken> tokens);
  void EncodeText(std::string_view text, std::vector<int32_t>* ids) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  PostProcessor post_processor_;
  Decoder decoder_;

  std::vector<AddedToken> added_;  // by index; one entry per added id
  AddedTokenMatcher raw_matcher_;         // tokens with normalized=false
  AddedTokenMatcher normalized_matcher_;  // tokens with normalized=true
  std::vector<std::string> decoder_input_;  // per id
  std::vector<uint8_t> has_input_;          // per id
  std::vector<uint8_t> skip_special_;       // per id
  std::vector<uint8_t> special_;            // per id
  std::vector<int32_t> added_index_;        // per id: index into added_, or -1
  std::vector<std::pair<std::string, int32_t>> added_by_content_;  // sorted
  int32_t id_limit_ = 0;
};

}  // namespace gs
