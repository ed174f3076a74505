#include "tokenizer/vocab_table.h"

#include <cstring>

namespace gs {

uint64_t HashBytes(std::string_view s) {
  // 8 bytes at a time with a multiply-xorshift mix; good enough for token strings and fast.
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
  uint64_t h = 0x243F6A8885A308D3ULL ^ (s.size() * kMul);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  h *= kMul;
  return h ^ (h >> 32);
}

void VocabTable::Reserve(size_t n) {
  by_id_.reserve(n);
  if (slots_.size() >= n * 2) return;
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(cap, Slot{});
  for (const Slot& s : old) {
    if (s.id < 0) continue;
    size_t i = HashBytes(View(by_id_[s.id])) & (cap - 1);
    while (slots_[i].id >= 0) i = (i + 1) & (cap - 1);
    slots_[i] = s;
  }
}

void VocabTable::Grow() { Reserve(slots_.empty() ? 8 : slots_.size()); }

VocabTable::AddResult VocabTable::Add(std::string_view token, int32_t id) {
  if (static_cast<size_t>(id) < by_id_.size() && by_id_[id].present) return AddResult::kDuplicateId;
  if ((count_ + 1) * 2 > slots_.size()) Grow();
  const size_t mask = slots_.size() - 1;
  const uint64_t h = HashBytes(token);
  const auto tag = static_cast<uint32_t>(h >> 32);
  size_t i = h & mask;
  while (slots_[i].id >= 0) {
    if (slots_[i].tag == tag && View(by_id_[slots_[i].id]) == token) {
      return AddResult::kDuplicateString;
    }
    i = (i + 1) & mask;
  }
  if (static_cast<size_t>(id) >= by_id_.size()) by_id_.resize(static_cast<size_t>(id) + 1);
  by_id_[id] = Span{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size()), true};
  arena_.append(token);
  slots_[i] = Slot{tag, id};
  ++count_;
  return AddResult::kAdded;
}

int32_t VocabTable::Find(std::string_view token) const {
  if (slots_.empty()) return -1;
  const size_t mask = slots_.size() - 1;
  const uint64_t h = HashBytes(token);
  const auto tag = static_cast<uint32_t>(h >> 32);
  size_t i = h & mask;
  while (slots_[i].id >= 0) {
    if (slots_[i].tag == tag && View(by_id_[slots_[i].id]) == token) return slots_[i].id;
    i = (i + 1) & mask;
  }
  return -1;
}

std::string_view VocabTable::Token(int32_t id, bool* found) const {
  if (id < 0 || static_cast<size_t>(id) >= by_id_.size() || !by_id_[id].present) {
    if (found) *found = false;
    return {};
  }
  if (found) *found = true;
  return View(by_id_[id]);
}

void MergeTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > slots_.size()) Rehash(cap);
}

void MergeTable::Rehash(size_t capacity) {
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  count_ = 0;
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    size_t i = Mix(s.key) & mask_;
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
    ++count_;
  }
}

void MergeTable::Put(int32_t left, int32_t right, Value v) {
  if ((count_ + 1) * 2 > slots_.size()) Rehash(slots_.empty() ? 16 : slots_.size() * 2);
  const uint64_t key = Key(left, right);
  size_t i = Mix(key) & mask_;
  while (slots_[i].key != kEmpty) {
    if (slots_[i].key == key) {
      slots_[i].value = v;
      return;
    }
    i = (i + 1) & mask_;
  }
  slots_[i].key = key;
  slots_[i].value = v;
  ++count_;
}

}  // namespace gs
