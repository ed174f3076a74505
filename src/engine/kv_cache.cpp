#include "engine/kv_cache.h"

#include <algorithm>
#include <ranges>

namespace gs {

KvCacheManager::KvCacheManager(const KvCacheSpec& spec, const KvCacheOptions& options)
    : spec_(spec), options_(options), blocks_(static_cast<size_t>(spec.num_global_blocks)) {
  for (int32_t b = 0; b < spec_.num_global_blocks; ++b) PushFreeBack(b);
  const int seq_slots = std::clamp(options_.num_sequence_slots, 0, spec_.max_sequences);
  for (int s = seq_slots - 1; s >= 0; --s) free_slots_.push_back(s);
  if (options_.prefix_caching && options_.needs_snapshots) {
    for (int s = seq_slots; s < spec_.max_sequences; ++s) snapshots_.push_back({s, -1, 0});
  }
}

int KvCacheManager::num_snapshots() const {
  return static_cast<int>(std::ranges::count_if(snapshots_, [](const Snapshot& s) { return s.block >= 0; }));
}

int KvCacheManager::AllocateSlot() {
  if (free_slots_.empty()) return -1;
  const int s = free_slots_.back();
  free_slots_.pop_back();
  return s;
}

void KvCacheManager::FreeSlot(int slot) {
  if (slot >= 0) free_slots_.push_back(slot);
}

bool KvCacheManager::Matches(const Block& b, const BlockKey& key, int32_t parent) const {
  if (!b.registered || b.hash != key.hash || b.parent != parent) return false;
  if (parent >= 0 && blocks_[static_cast<size_t>(parent)].generation != b.parent_generation) {
    return false;
  }
  return std::ranges::equal(b.tokens, key.tokens) && b.extra == key.extra;
}

bool KvCacheManager::Reachable(const Block& block) const {
  for (const Block* b = &block; b->parent >= 0;) {
    const Block& parent = blocks_[static_cast<size_t>(b->parent)];
    if (!parent.registered || parent.generation != b->parent_generation) return false;
    b = &parent;
  }
  return true;
}

PrefixHit KvCacheManager::FindPrefix(std::span<const BlockKey> keys) {
  PrefixHit hit;
  if (!options_.prefix_caching) return hit;
  int32_t parent = -1;
  for (const BlockKey& key : keys) {
    auto it = by_hash_.find(key.hash);
    if (it == by_hash_.end() || !Matches(blocks_[static_cast<size_t>(it->second)], key, parent)) break;
    parent = it->second;
    hit.blocks.push_back(parent);
  }
  if (options_.needs_snapshots) {
    // The hit must end where a snapshot of the sliding state exists (see the header).
    while (!hit.blocks.empty() && blocks_[static_cast<size_t>(hit.blocks.back())].snapshot < 0) {
      hit.blocks.pop_back();
    }
    if (!hit.blocks.empty()) {
      Snapshot& s = snapshots_[static_cast<size_t>(blocks_[static_cast<size_t>(hit.blocks.back())].snapshot)];
      s.last_used = ++tick_;
      hit.snapshot_slot = s.slot;
    }
  }
  hit.num_tokens = static_cast<int>(hit.blocks.size()) * spec_.block_size;
  return hit;
}

void KvCacheManager::Acquire(std::span<const int32_t> table) {
  for (int32_t b : table) {
    Block& blk = blocks_[static_cast<size_t>(b)];
    if (blk.ref++ == 0) {
      Unlink(b);
      ++used_blocks_;
    }
  }
}

bool KvCacheManager::Grow(std::vector<int32_t>* table, int num_positions) {
  const int needed = (num_positions + spec_.block_size - 1) / spec_.block_size;
  const int missing = needed - static_cast<int>(table->size());
  if (missing <= 0) return true;
  if (missing > num_free_blocks()) return false;
  for (int i = 0; i < missing; ++i) {
    const int32_t b = PopFree();
    Evict(b);
    blocks_[static_cast<size_t>(b)].ref = 1;
    ++used_blocks_;
    table->push_back(b);
  }
  return true;
}

void KvCacheManager::Release(std::vector<int32_t>* table) {
  // Last block first: a chain's tail is then reused before its head, which more requests share.
  for (int32_t b : std::views::reverse(*table)) {
    Block& blk = blocks_[static_cast<size_t>(b)];
    if (--blk.ref > 0) continue;
    --used_blocks_;
    if (blk.registered) {
      PushFreeBack(b);
    } else {
      PushFreeFront(b);  // nothing worth keeping: reuse it first
    }
  }
  table->clear();
}

int32_t KvCacheManager::Register(int32_t block, int32_t parent, const BlockKey& key) {
  if (!options_.prefix_caching) return -1;
  Block& blk = blocks_[static_cast<size_t>(block)];
  if (blk.registered) return block;  // a prefix hit, cached already
  auto it = by_hash_.find(key.hash);
  if (it != by_hash_.end()) {
    const Block& other = blocks_[static_cast<size_t>(it->second)];
    if (Matches(other, key, parent)) return it->second;  // the same content, computed before
    if (Reachable(other)) return -1;  // a hash collision: keep the first
    // The cached block hangs off evicted content, so FindPrefix can never reach it: replace it.
    blocks_[static_cast<size_t>(it->second)].registered = false;
    DropSnapshot(it->second);
  }
  by_hash_[key.hash] = block;
  blk.registered = true;
  blk.hash = key.hash;
  blk.parent = parent;
  blk.parent_generation = parent >= 0 ? blocks_[static_cast<size_t>(parent)].generation : 0;
  blk.tokens.assign(key.tokens.begin(), key.tokens.end());
  blk.extra.assign(key.extra);
  return block;
}

int KvCacheManager::ReserveSnapshot(int32_t block) {
  if (snapshots_.empty()) return -1;
  Block& blk = blocks_[static_cast<size_t>(block)];
  if (!blk.registered || blk.snapshot >= 0) return -1;
  auto lru = std::ranges::min_element(snapshots_, [](const Snapshot& a, const Snapshot& b) {
    // Unused slots first, then the least recently used.
    return (a.block >= 0) < (b.block >= 0) || ((a.block >= 0) == (b.block >= 0) && a.last_used < b.last_used);
  });
  if (lru->block >= 0) blocks_[static_cast<size_t>(lru->block)].snapshot = -1;
  lru->block = block;
  lru->last_used = ++tick_;
  blk.snapshot = static_cast<int>(lru - snapshots_.begin());
  return lru->slot;
}

void KvCacheManager::ForgetSnapshot(int slot) {
  for (const Snapshot& s : snapshots_) {
    if (s.slot == slot && s.block >= 0) {
      DropSnapshot(s.block);
      return;
    }
  }
}

void KvCacheManager::DropSnapshot(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.snapshot < 0) return;
  snapshots_[static_cast<size_t>(blk.snapshot)].block = -1;
  snapshots_[static_cast<size_t>(blk.snapshot)].last_used = 0;
  blk.snapshot = -1;
}

void KvCacheManager::Evict(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  DropSnapshot(b);
  if (blk.registered) {
    auto it = by_hash_.find(blk.hash);
    if (it != by_hash_.end() && it->second == b) by_hash_.erase(it);
    blk.registered = false;
  }
  ++blk.generation;  // children registered after this content no longer match
  blk.parent = -1;
  blk.tokens.clear();
  blk.extra.clear();
}

int32_t KvCacheManager::PopFree() {
  const int32_t b = free_head_;
  Unlink(b);
  return b;
}

void KvCacheManager::Unlink(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (!blk.in_free_list) return;
  if (blk.prev >= 0) blocks_[static_cast<size_t>(blk.prev)].next = blk.next;
  else free_head_ = blk.next;
  if (blk.next >= 0) blocks_[static_cast<size_t>(blk.next)].prev = blk.prev;
  else free_tail_ = blk.prev;
  blk.prev = blk.next = -1;
  blk.in_free_list = false;
}

void KvCacheManager::PushFreeFront(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.prev = -1;
  blk.next = free_head_;
  if (free_head_ >= 0) blocks_[static_cast<size_t>(free_head_)].prev = b;
  else free_tail_ = b;
  free_head_ = b;
  blk.in_free_list = true;
}

void KvCacheManager::PushFreeBack(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.next = -1;
  blk.prev = free_tail_;
  if (free_tail_ >= 0) blocks_[static_cast<size_t>(free_tail_)].next = b;
  else free_head_ = b;
  free_tail_ = b;
  blk.in_free_list = true;
}

}  // namespace gs
