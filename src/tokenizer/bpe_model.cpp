#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"

namespace gs {

// Ids of short chunks, shared by all threads that encode with one tokenizer. Sharded so that
// concurrent encoders rarely wait; each shard is a flat open-addressing table over arenas (no
// per-entry allocation), bounded, and simply stops inserting when full (as HF's cache does).
class BpeWordCache {
 public:
  static constexpr size_t kMaxKeyBytes = 64;

  bool Lookup(std::string_view key, uint64_t hash, std::vector<int32_t>* out) {
    Shard& s = shards_[hash >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.slots.empty()) return false;
    for (size_t i = hash & kSlotMask;; i = (i + 1) & kSlotMask) {
      const Entry& e = s.slots[i];
      if (e.key_len == 0) return false;
      if (e.hash == hash && e.key_len == key.size() &&
          std::memcmp(s.keys.data() + e.key_offset, key.data(), key.size()) == 0) {
        out->insert(out->end(), s.ids.begin() + e.ids_offset,
                    s.ids.begin() + e.ids_offset + e.ids_len);
        return true;
      }
    }
  }

  void Insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n) {
    Shard& s = shards_[hash >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.count >= kMaxEntriesPerShard || key.empty()) return;
    if (s.slots.empty()) s.slots.resize(kSlots);
    size_t i = hash & kSlotMask;
    while (s.slots[i].key_len != 0) {
      const Entry& e = s.slots[i];
      if (e.hash == hash && e.key_len == key.size() &&
          std::memcmp(s.keys.data() + e.key_offset, key.data(), key.size()) == 0) {
        return;  // another thread got here first
      }
      i = (i + 1) & kSlotMask;
    }
    s.slots[i] = Entry{hash, static_cast<uint32_t>(s.keys.size()),
                       static_cast<uint32_t>(s.ids.size()), static_cast<uint16_t>(key.size()),
                       static_cast<uint16_t>(n)};
    s.keys.append(key);
    s.ids.insert(s.ids.end(), ids, ids + n);
    ++s.count;
  }

 private:
  static constexpr size_t kShards = 16;
  static constexpr size_t kSlots = 1 << 14;
  static constexpr size_t kSlotMask = kSlots - 1;
  static constexpr size_t kMaxEntriesPerShard = kSlots / 2;
  struct Entry {
    uint64_t hash = 0;
    uint32_t key_offset = 0;
    uint32_t ids_offset = 0;
    uint16_t key_len = 0;  // 0 marks an empty slot (keys are never empty)
    uint16_t ids_len = 0;
  };
  struct Shard {
    std::mutex mu;
    std::vector<Entry> slots;  // allocated on first insert
    std::string keys;
    std::vector<int32_t> ids;
    size_t count = 0;
  };
  Shard shards_[kShards];
};

namespace {

constexpr char32_t kMetaspace = 0x2581;  // "▁"
constexpr int32_t kMaxId = (1 << 24) - 1;

// Characters around which chunk cuts are considered; index into BpeModel's cut tables.
constexpr char32_t kSeparators[] = {kMetaspace, ' ', '\n', '\r', '\t'};

int SeparatorIndex(char32_t c) {
  for (int i = 0; i < 5; ++i) {
    if (kSeparators[i] == c) return i;
  }
  return -1;
}

bool IsSeparator(char32_t c) { return SeparatorIndex(c) >= 0; }

uint64_t PairKey(char32_t a, char32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

char32_t FirstChar(std::string_view s) {
  char32_t cp = 0;
  DecodeUtf8(s, 0, &cp);
  return cp;
}

char32_t LastChar(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i == 0) return 0;
  char32_t cp = 0;
  DecodeUtf8(s, i - 1, &cp);
  return cp;
}

// A small scalar field read through nlohmann (numbers in any JSON form).
Expected<nlohmann::json> ReadScalar(JsonCursor& c, const std::string& path) {
  std::string_view raw;
  GS_RETURN_IF_ERROR(c.RawValue(&raw));
  try {
    return nlohmann::json::parse(raw);
  } catch (const std::exception& e) {
    return MakeError(c.source(), ": ", path, ": ", e.what());
  }
}

Status ReadOptionalBool(JsonCursor& c, const std::string& path, bool* out) {
  if (c.TryReadNull()) return Ok();
  if (!c.ReadBool(out).ok()) return c.ErrorHere(path + ": expected true, false or null");
  return Ok();
}

Status ReadOptionalString(JsonCursor& c, const std::string& path, bool* present,
                          std::string* out) {
  *present = false;
  if (c.TryReadNull()) return Ok();
  if (c.Peek() != '"') return c.ErrorHere(path + ": expected a string or null");
  GS_RETURN_IF_ERROR(c.ReadString(out));
  *present = true;
  return Ok();
}

Status ReadVocab(JsonCursor& c, VocabTable* vocab) {
  if (c.Peek() != '{') return c.ErrorHere("model.vocab: expected an object");
  GS_RETURN_IF_ERROR(c.Expect('{'));
  vocab->Reserve(1 << 18);
  std::string token;
  bool first = true;
  while (true) {
    GS_ASSIGN_OR_RETURN(bool more, c.NextKey(&first, &token));
    if (!more) break;
    int64_t id;
    if (!c.ReadInt64(&id).ok()) {
      return c.ErrorHere(StrCat("model.vocab[\"", token, "\"]: expected an integer id"));
    }
    if (id < 0 || id > kMaxId) {
      return c.ErrorHere(
          StrCat("model.vocab[\"", token, "\"]: id ", id, " is out of range (0..", kMaxId, ")"));
    }
    switch (vocab->Add(token, static_cast<int32_t>(id))) {
      case VocabTable::AddResult::kAdded:
        break;
      case VocabTable::AddResult::kDuplicateString:
        return c.ErrorHere(StrCat("model.vocab: token \"", token, "\" appears twice"));
      case VocabTable::AddResult::kDuplicateId:
        return c.ErrorHere(StrCat("model.vocab: id ", id, " is used by \"",
                                  vocab->Token(static_cast<int32_t>(id)), "\" and \"", token,
                                  "\""));
    }
  }
  return Ok();
}

}  // namespace

BpeModel::BpeModel() { std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1); }
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

// Reads "merges" ("a b" strings or [a, b] pairs; one form for the whole list, as HF requires).
static Status ReadMerges(JsonCursor& c, const VocabTable& vocab, MergeTable* merges,
                         std::unordered_set<uint64_t>* joinable) {
  if (c.Peek() != '[') return c.ErrorHere("model.merges: expected an array");
  GS_RETURN_IF_ERROR(c.Expect('['));
  merges->Reserve(1 << 19);
  std::string a, b, line, joined;
  bool first = true;
  int form = 0;  // 1: strings, 2: pairs
  uint32_t rank = 0;
  for (size_t index = 0;; ++index) {
    GS_ASSIGN_OR_RETURN(bool more, c.NextElement(&first));
    if (!more) break;
    // Built only on error: formatting it for each of 500k merges would dominate the load time.
    auto where_fn = [index] { return StrCat("model.merges[", index, "]"); };
    const int this_form = c.Peek() == '"' ? 1 : c.Peek() == '[' ? 2 : 0;
    if (this_form == 0) return c.ErrorHere(where_fn() + ": expected \"a b\" or [\"a\", \"b\"]");
    if (form != 0 && this_form != form) {
      return c.ErrorHere(where_fn() + ": merges mix the \"a b\" and [a, b] forms");
    }
    form = this_form;
    if (form == 1) {
      GS_RETURN_IF_ERROR(c.ReadString(&line));
      if (StartsWith(line, "#version")) continue;  // HF skips these header lines
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return c.ErrorHere(where_fn() + ": expected exactly one space in \"" + line + "\"");
      }
      a.assign(line, 0, space);
      b.assign(line, space + 1);
    } else {
      GS_RETURN_IF_ERROR(c.Expect('['));
      bool pair_first = true;
      for (std::string* part : {&a, &b}) {
        GS_ASSIGN_OR_RETURN(bool has, c.NextElement(&pair_first));
        if (!has) return c.ErrorHere(where_fn() + ": expected two strings");
        GS_RETURN_IF_ERROR(c.ReadString(part));
      }
      GS_ASSIGN_OR_RETURN(bool extra, c.NextElement(&pair_first));
      if (extra) return c.ErrorHere(where_fn() + ": expected exactly two strings");
    }
    const int32_t a_id = vocab.Find(a), b_id = vocab.Find(b);
    joined.assign(a).append(b);
    const int32_t new_id = vocab.Find(joined);
    for (auto [id, s] : {std::pair{a_id, &a}, {b_id, &b}, {new_id, &joined}}) {
      if (id < 0) {
        return c.ErrorHere(StrCat(where_fn(), ": token \"", *s, "\" is not in the vocabulary"));
      }
    }
    merges->Put(a_id, b_id, {rank++, new_id});
    const char32_t left = LastChar(a), right = FirstChar(b);
    if (IsSeparator(left) || IsSeparator(right)) joinable->insert(PairKey(left, right));
  }
  return Ok();
}

Expected<BpeModel> BpeModel::Parse(JsonCursor& c) {
  BpeModel m;
  if (c.Peek() != '{') return c.ErrorHere("model: expected an object");
  GS_RETURN_IF_ERROR(c.Expect('{'));
  std::string key, type;
  bool first = true, seen_vocab = false;
  size_t merges_at = 0;
  bool seen_merges = false;
  while (true) {
    GS_ASSIGN_OR_RETURN(bool more, c.NextKey(&first, &key));
    if (!more) break;
    const std::string path = "model." + key;
    if (key == "type") {
      if (c.Peek() != '"') return c.ErrorHere("model.type: expected a string");
      GS_RETURN_IF_ERROR(c.ReadString(&type));
      if (type != "BPE") return MakeError(c.source(), ": model type '", type, "' is not supported");
    } else if (key == "vocab") {
      GS_RETURN_IF_ERROR(ReadVocab(c, &m.vocab_));
      seen_vocab = true;
    } else if (key == "merges") {
      // Merges name tokens, so they are read once the vocabulary is known.
      c.Peek();
      merges_at = c.position();
      seen_merges = true;
      GS_RETURN_IF_ERROR(c.SkipValue());
    } else if (key == "unk_token") {
      GS_RETURN_IF_ERROR(ReadOptionalString(c, path, &m.has_unk_, &m.unk_token_));
    } else if (key == "continuing_subword_prefix" || key == "end_of_word_suffix") {
      bool present;
      std::string value;
      GS_RETURN_IF_ERROR(ReadOptionalString(c, path, &present, &value));
      if (present && !value.empty()) {
        return MakeError(c.source(), ": model option '", key, "' is not supported");
      }
    } else if (key == "dropout") {
      GS_ASSIGN_OR_RETURN(nlohmann::json v, ReadScalar(c, path));
      if (!v.is_null() && !(v.is_number() && v.get<double>() == 0.0)) {
        return MakeError(c.source(), ": model option 'dropout' is not supported");
      }
    } else if (key == "fuse_unk") {
      GS_RETURN_IF_ERROR(ReadOptionalBool(c, path, &m.fuse_unk_));
    } else if (key == "byte_fallback") {
      GS_RETURN_IF_ERROR(ReadOptionalBool(c, path, &m.byte_fallback_));
    } else if (key == "ignore_merges") {
      GS_RETURN_IF_ERROR(ReadOptionalBool(c, path, &m.ignore_merges_));
    } else {
      return MakeError(c.source(), ": model option '", key, "' is not supported");
    }
  }
  if (type.empty()) return MakeError(c.source(), ": model: missing field 'type'");
  if (!seen_vocab || !seen_merges) {
    return MakeError(c.source(), ": model: missing field '", seen_vocab ? "merges" : "vocab", "'");
  }
  const size_t end = c.position();
  c.Seek(merges_at);
  GS_RETURN_IF_ERROR(ReadMerges(c, m.vocab_, &m.merges_, &m.joinable_));
  c.Seek(end);
  GS_RETURN_IF_ERROR(m.Finish(c.source()));
  return m;
}

Status BpeModel::Finish(const std::string& source) {
  static const char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const char name[] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    byte_ids_[b] = vocab_.Find(std::string_view(name, 6));
  }
  if (has_unk_) {
    unk_id_ = vocab_.Find(unk_token_);
    if (unk_id_ < 0) {
      return MakeError(source, ": model.unk_token \"", unk_token_, "\" is not in the vocabulary");
    }
  }
  bmp_char_id_.assign(0x10000, -1);
  for (int32_t id = 0; id < vocab_.id_limit(); ++id) {
    bool found;
    const std::string_view t = vocab_.Token(id, &found);
    char32_t cp;
    if (!found || t.empty() || DecodeUtf8(t, 0, &cp) != t.size()) continue;
    if (cp < 0x10000) {
      bmp_char_id_[cp] = id;
    } else {
      astral_char_id_.emplace_back(cp, id);
    }
  }
  std::sort(astral_char_id_.begin(), astral_char_id_.end());
  // Cut tables for (BMP character, separator) boundaries: a cut is safe when both characters are
  // single tokens and no merge joins a left part ending in one to a right part starting with the
  // other.
  std::vector<uint8_t> known(0x10000, 0);
  for (size_t cp = 0; cp < known.size(); ++cp) known[cp] = bmp_char_id_[cp] >= 0;
  for (int k = 0; k < 5; ++k) {
    if (CharId(kSeparators[k]) >= 0) {
      cut_before_sep_[k] = known;
      cut_after_sep_[k] = known;
    } else {
      cut_before_sep_[k].assign(0x10000, 0);
      cut_after_sep_[k].assign(0x10000, 0);
    }
  }
  for (uint64_t pair : joinable_) {
    const auto left = static_cast<char32_t>(pair >> 32), right = static_cast<char32_t>(pair);
    const int ls = SeparatorIndex(left), rs = SeparatorIndex(right);
    if (rs >= 0 && left < 0x10000) cut_before_sep_[rs][left] = 0;
    if (ls >= 0 && right < 0x10000) cut_after_sep_[ls][right] = 0;
  }
  chunking_ = true;
  cache_ = std::make_unique<BpeWordCache>();
  return Ok();
}

int32_t BpeModel::CharId(char32_t cp) const {
  if (cp < 0x10000) return bmp_char_id_[cp];
  auto it = std::lower_bound(astral_char_id_.begin(), astral_char_id_.end(),
                             std::pair<char32_t, int32_t>(cp, -1));
  return it != astral_char_id_.end() && it->first == cp ? it->second : -1;
}

bool BpeModel::SplitBetween(char32_t left, char32_t right) const {
  const int ls = SeparatorIndex(left), rs = SeparatorIndex(right);
  if (rs >= 0 && left < 0x10000) return cut_before_sep_[rs][left];
  if (ls >= 0 && right < 0x10000) return cut_after_sep_[ls][right];
  if (ls < 0 && rs < 0) return false;
  if (CharId(left) < 0 || CharId(right) < 0) return false;
  return joinable_.count(PairKey(left, right)) == 0;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    const int32_t id = vocab_.Find(word);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }
  if (!chunking_ || !fast_paths_) {
    TokenizeChunk(word, out);
    return;
  }
  size_t chunk_start = 0;
  char32_t prev = 0;
  bool prev_sep = false;
  for (size_t i = 0; i < word.size();) {
    char32_t cp = 0;
    const auto b = static_cast<unsigned char>(word[i]);
    size_t len = 1;
    if (b < 0x80) {
      cp = b;
    } else {
      len = DecodeUtf8(word, i, &cp);
      if (len == 0) {  // not reachable for valid input; keep going without cutting
        len = 1;
        cp = 0xFFFD;
      }
    }
    const bool sep = IsSeparator(cp);
    if (i > 0 && (sep || prev_sep) && SplitBetween(prev, cp)) {
      TokenizeChunk(word.substr(chunk_start, i - chunk_start), out);
      chunk_start = i;
    }
    prev = cp;
    prev_sep = sep;
    i += len;
  }
  TokenizeChunk(word.substr(chunk_start), out);
}

void BpeModel::TokenizeChunk(std::string_view chunk, std::vector<int32_t>* out) const {
  if (!fast_paths_ || chunk.size() > BpeWordCache::kMaxKeyBytes) {
    MergeChunk(chunk, out);
    return;
  }
  const uint64_t hash = HashBytes(chunk);
  if (cache_->Lookup(chunk, hash, out)) return;
  const size_t before = out->size();
  MergeChunk(chunk, out);
  if (out->size() - before <= 0xFFFF) {
    cache_->Insert(chunk, hash, out->data() + before, out->size() - before);
  }
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t len;  // bytes; 0 once merged into its left neighbour
};

struct Candidate {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
};

// Min-heap order: lowest rank first, then leftmost position.
struct Later {
  bool operator()(const Candidate& x, const Candidate& y) const {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  }
};

}  // namespace

void BpeModel::MergeChunk(std::string_view chunk, std::vector<int32_t>* out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  auto add = [&](int32_t id, int32_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };
  // Initial symbols: one per character; unknown characters become byte tokens, or unk.
  int32_t pending_unk_len = 0;
  for (size_t i = 0; i < chunk.size();) {
    char32_t cp = 0;
    size_t len = DecodeUtf8(chunk, i, &cp);
    if (len == 0) len = 1;  // not reachable for valid UTF-8 input
    const int32_t id = len == 1 && static_cast<unsigned char>(chunk[i]) >= 0x80 ? -1 : CharId(cp);
    if (id >= 0) {
      if (pending_unk_len) add(unk_id_, pending_unk_len);
      pending_unk_len = 0;
      add(id, static_cast<int32_t>(len));
    } else {
      bool all_bytes = byte_fallback_;
      for (size_t k = 0; all_bytes && k < len; ++k) {
        all_bytes = byte_ids_[static_cast<unsigned char>(chunk[i + k])] >= 0;
      }
      if (all_bytes) {
        // HF adds the byte tokens without flushing a pending unk first.
        for (size_t k = 0; k < len; ++k) add(byte_ids_[static_cast<unsigned char>(chunk[i + k])], 1);
      } else if (has_unk_) {
        if (pending_unk_len && !fuse_unk_) {
          add(unk_id_, pending_unk_len);
          pending_unk_len = 0;
        }
        pending_unk_len += static_cast<int32_t>(len);
      }
      // Without byte fallback or unk, HF drops the character.
    }
    i += len;
  }
  if (pending_unk_len) add(unk_id_, pending_unk_len);

  for (size_t p = 0; p + 1 < symbols.size(); ++p) {
    if (const MergeTable::Value* m = merges_.Find(symbols[p].id, symbols[p + 1].id)) {
      heap.push_back({m->rank, static_cast<int32_t>(p), m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), Later());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    // A stale candidate: the pair at this position changed since it was queued.
    const MergeTable::Value* now = merges_.Find(left.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;
    symbols[left.next].len = 0;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeTable::Value* m = merges_.Find(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), Later());
      }
    }
    if (left.next >= 0) {
      if (const MergeTable::Value* m = merges_.Find(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), Later());
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) out->push_back(s.id);
  }
}

}  // namespace gs
