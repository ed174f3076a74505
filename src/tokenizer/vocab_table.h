// Flat, allocation-light lookup tables for the BPE vocabulary (token string <-> id) and the merge
// table ((left id, right id) -> rank, merged id). A 262k vocabulary and 515k merges load in tens
// of milliseconds and look up without chasing pointers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gs {

uint64_t HashBytes(std::string_view s);

// Token strings by id plus a string -> id index. All strings live in one arena.
class VocabTable {
 public:
  enum class AddResult { kAdded, kDuplicateString, kDuplicateId };
  // Adds `token` with `id` (0 <= id < 2^31); a string or id seen before is refused, not replaced.
  AddResult Add(std::string_view token, int32_t id);
  int32_t Find(std::string_view token) const;  // -1 if absent
  // The string of `id`, or an empty view with *found=false.
  std::string_view Token(int32_t id, bool* found = nullptr) const;
  size_t size() const { return count_; }
  // One past the largest id (ids may have gaps).
  int32_t id_limit() const { return static_cast<int32_t>(by_id_.size()); }
  void Reserve(size_t n);

 private:
  struct Span {
    uint32_t offset = 0;
    uint32_t length = 0;
    bool present = false;
  };
  void Grow();
  std::string_view View(const Span& s) const { return {arena_.data() + s.offset, s.length}; }

  std::string arena_;
  std::vector<Span> by_id_;
  struct Slot {
    uint32_t tag = 0;  // high hash bits, checked before the string
    int32_t id = -1;
  };
  std::vector<Slot> slots_;  // open addressing, linear probing
  size_t count_ = 0;
};

// (left id, right id) -> (rank, merged id).
class MergeTable {
 public:
  struct Value {
    uint32_t rank;
    int32_t new_id;
  };
  void Reserve(size_t n);
  void Put(int32_t left, int32_t right, Value v);  // later puts of a pair replace earlier ones
  const Value* Find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = Key(left, right);
    size_t i = Mix(key) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Value value{};
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t Mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  void Rehash(size_t capacity);

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace gs
