// KV cache bookkeeping of the engine (DESIGN §3). The runner owns the memory; this class decides
// who uses which part of it:
//   - global layers: a pool of paged blocks of `block_size` positions, reference counted, with a
//     prefix cache: a full, computed block is registered under the chain hash of its tokens and
//     stays reusable after its sequences release it, until the pool needs it back (LRU);
//   - sliding layers: one ring of `sliding_window` positions per KV slot (the runner implements
//     the ring; the engine hands out slots).
//
// Prefix caching with sliding layers. A sequence that reuses the cached global blocks of a prefix
// [0, P) still needs, in its slot's ring, the sliding-layer K/V of positions [P - window, P). Those
// cannot be recomputed from the last `window` tokens alone: each sliding layer's K/V at a position
// depends on the hidden state there, which depends on the lower sliding layers' attention over the
// `window` positions before it, and so on down the stack, so the exact values need the whole
// prefix again (which would save nothing). So the engine keeps *snapshots*: a copy of a
// sequence's ring taken right after it computed exactly through the end of a block (the
// scheduler ends prefill chunks there), stored in a spare runner slot and attached to that block.
// A prefix hit is the longest chain of cached blocks that ENDS in a block with a snapshot; the new
// sequence gets the snapshot copied into its own slot and starts computing at P. Everything it
// reads is then bit-for-bit what it would have computed itself, so results with prefix caching
// equal results without. Snapshots are taken at the last block boundary before the end of each
// prompt (this serves identical prompts, n > 1 and the earlier turns of a conversation) and every
// `snapshot_interval` tokens (this serves prompts that share only a long system prompt). A
// snapshot costs one slot's ring (for gemma-4-26B-A4B about the KV of 10k tokens of global layers),
// so their number is bounded and they are evicted LRU; they die with their block. Models without
// sliding layers need no snapshot: any cached chain is a hit.
//
// Hit identity is exact, never a bare hash match: a block is reused only if its tokens and extra
// key equal the query's and its recorded parent (block id + generation, bumped on eviction) is the
// block matched one position earlier.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/model_runner.h"

namespace gs {

struct KvCacheOptions {
  int num_sequence_slots = 1;   // slots [0, n) run sequences; [n, max_sequences) hold snapshots
  bool prefix_caching = true;
  bool needs_snapshots = true;  // the model has sliding layers
};

// One full block of a sequence's tokens as the prefix cache sees it.
struct BlockKey {
  uint64_t hash = 0;
  std::span<const int32_t> tokens;
  std::string_view extra;
};

struct PrefixHit {
  std::vector<int32_t> blocks;  // the cached blocks to start the block table with
  int num_tokens = 0;           // positions they cover (a multiple of block_size)
  int snapshot_slot = -1;       // copy this slot's ring into the sequence's slot (-1: none needed)
};

class KvCacheManager {
 public:
  KvCacheManager(const KvCacheSpec& spec, const KvCacheOptions& options);

  int block_size() const { return spec_.block_size; }
  int num_blocks() const { return spec_.num_global_blocks; }
  int num_used_blocks() const { return used_blocks_; }  // held by at least one sequence
  int num_free_blocks() const { return num_blocks() - used_blocks_; }  // incl. cached, unused
  int num_cached_blocks() const { return static_cast<int>(by_hash_.size()); }
  int num_snapshot_slots() const { return static_cast<int>(snapshots_.size()); }
  int num_snapshots() const;

  // Sequence slots; -1 when all are taken.
  int AllocateSlot();
  void FreeSlot(int slot);
  int num_free_slots() const { return static_cast<int>(free_slots_.size()); }

  // The longest reusable prefix of a sequence whose full blocks are `keys` (pass only blocks
  // before its last token: that one must be computed to get logits). Takes no reference.
  PrefixHit FindPrefix(std::span<const BlockKey> keys);
  // References the blocks of a hit, which start the sequence's block table.
  void Acquire(std::span<const int32_t> blocks);
  // Grows `table` to cover `num_positions`; all or nothing (false: not enough free blocks).
  bool Grow(std::vector<int32_t>* table, int num_positions);
  // Drops a sequence's references and clears `table`. Its registered blocks stay in the cache.
  void Release(std::vector<int32_t>* table);

  // Offers a full, computed block of a sequence to the cache. `parent` is the cached block that
  // holds the content of the sequence's previous block (-1 for block 0). Returns the cached block
  // that now holds this content: `block` itself, or an equal block cached earlier (then `block`
  // stays private), or -1 if it cannot be cached (a different block owns the hash).
  int32_t Register(int32_t block, int32_t parent, const BlockKey& key);

  // Reserves a snapshot slot for the sliding state right after `block`, evicting the least
  // recently used snapshot. -1 if the block is not registered, already has one, or snapshots are
  // off. The caller copies the sequence's ring into the returned slot before its next step.
  int ReserveSnapshot(int32_t block);
  // Detaches the snapshot held in `slot` (its copy failed).
  void ForgetSnapshot(int slot);

 private:
  struct Block {
    int ref = 0;
    bool registered = false;
    uint64_t hash = 0;
    uint64_t generation = 0;  // bumped when the block's content is evicted
    int32_t parent = -1;
    uint64_t parent_generation = 0;
    std::vector<int32_t> tokens;
    std::string extra;
    int snapshot = -1;  // index into snapshots_
    int32_t prev = -1, next = -1;  // free list links
    bool in_free_list = false;
  };
  struct Snapshot {
    int slot = 0;
    int32_t block = -1;  // -1: unused
    uint64_t last_used = 0;
  };

  bool Matches(const Block& b, const BlockKey& key, int32_t parent) const;
  bool Reachable(const Block& b) const;  // its ancestors are still what it was computed after
  int32_t PopFree();
  void PushFreeFront(int32_t b);
  void PushFreeBack(int32_t b);
  void Unlink(int32_t b);
  void Evict(int32_t b);  // forgets the content of a free block about to be reused
  void DropSnapshot(int32_t b);

  KvCacheSpec spec_;
  KvCacheOptions options_;
  std::vector<Block> blocks_;
  int32_t free_head_ = -1, free_tail_ = -1;  // order of reuse: head first
  int used_blocks_ = 0;
  std::unordered_map<uint64_t, int32_t> by_hash_;
  std::vector<int> free_slots_;
  std::vector<Snapshot> snapshots_;
  uint64_t tick_ = 0;
};

}  // namespace gs
