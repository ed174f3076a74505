// The BPE model of tokenizer.json: vocabulary, ranked merges, byte fallback (<0xNN> tokens),
// unk with fuse_unk, and ignore_merges. Merging is HF's: repeatedly merge the adjacent pair with
// the lowest rank, leftmost first.
//
// Speed: Gemma's pre-tokenizer leaves the whole text as one "word", so Tokenize() cuts it into
// independent chunks at character boundaries no merge can cross (found from the merge table at
// load time, e.g. before "▁" and around "\n" for Gemma) and caches the ids of short chunks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tokenizer/json_cursor.h"
#include "tokenizer/vocab_table.h"
#include "util/status.h"

namespace gs {

class BpeWordCache;

class BpeModel {
 public:
  BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Reads the "model" object at the cursor. Errors name "model.<field>".
  static Expected<BpeModel> Parse(JsonCursor& cursor);

  // Test hook: turns the chunking and the word cache off, to compare against the plain path.
  void set_fast_paths(bool on) { fast_paths_ = on; }

  // Appends the ids of one pre-token (non-empty, valid UTF-8).
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  const VocabTable& vocab() const { return vocab_; }

 private:
  Status Finish(const std::string& source);
  void TokenizeChunk(std::string_view chunk, std::vector<int32_t>* out) const;
  void MergeChunk(std::string_view chunk, std::vector<int32_t>* out) const;
  int32_t CharId(char32_t cp) const;
  bool SplitBetween(char32_t left, char32_t right) const;

  VocabTable vocab_;
  MergeTable merges_;
  std::string unk_token_;
  bool has_unk_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // id of "<0xNN>", or -1
  std::vector<int32_t> bmp_char_id_;  // id of each single-character token in the BMP, or -1
  std::vector<std::pair<char32_t, int32_t>> astral_char_id_;  // sorted
  // Character pairs (left end, right start) that some merge joins, among pairs involving one of
  // the separator characters below; any other separator boundary is a safe chunk cut.
  std::unordered_set<uint64_t> joinable_;
  // For BMP characters next to separator k: may the text be cut there?
  std::vector<uint8_t> cut_before_sep_[5];
  std::vector<uint8_t> cut_after_sep_[5];
  bool chunking_ = false;
  bool fast_paths_ = true;
  std::unique_ptr<BpeWordCache> cache_;
};

}  // namespace gs
