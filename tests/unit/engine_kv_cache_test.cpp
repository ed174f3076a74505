// KvCacheManager on its own: reference counts, all-or-nothing growth, eviction order, exact hit
// identity (tokens, extra key, parent chain with generations) and the rule that a hit must end at
// a sliding-state snapshot.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "engine/block_hash.h"
#include "engine/kv_cache.h"

namespace gs {
namespace {

constexpr int kBs = 4;

// Keys for a token sequence's full blocks, chained as the scheduler chains them.
struct Chain {
  explicit Chain(std::vector<int32_t> t, std::string salt = "") : tokens(std::move(t)) {
    for (size_t i = 0; i + kBs <= tokens.size(); i += kBs) {
      extras.push_back(i == 0 ? salt : "");
      const uint64_t parent = hashes.empty() ? 0 : hashes.back();
      hashes.push_back(HashBlock(parent, {tokens.data() + i, kBs}, extras.back()));
    }
  }
  std::vector<BlockKey> Keys() const {
    std::vector<BlockKey> k;
    for (size_t b = 0; b < hashes.size(); ++b) k.push_back({hashes[b], {tokens.data() + b * kBs, kBs}, extras[b]});
    return k;
  }
  std::vector<int32_t> tokens;
  std::vector<std::string> extras;
  std::vector<uint64_t> hashes;
};

std::vector<int32_t> Iota(int n, int start) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

KvCacheManager Make(int blocks, bool snapshots, int snapshot_slots = 2) {
  KvCacheSpec spec{2 + snapshot_slots, kBs, blocks};
  return KvCacheManager(spec, KvCacheOptions{2, true, snapshots});
}

// Allocates a table for the chain's tokens and registers every full block; returns the table.
std::vector<int32_t> Fill(KvCacheManager& kv, const Chain& c) {
  std::vector<int32_t> table;
  EXPECT_TRUE(kv.Grow(&table, static_cast<int>(c.tokens.size())));
  int32_t parent = -1;
  auto keys = c.Keys();
  for (size_t i = 0; i < keys.size(); ++i) parent = kv.Register(table[i], parent, keys[i]);
  return table;
}

TEST(KvCacheManager, GrowIsAllOrNothingAndReleaseFreesEverything) {
  KvCacheManager kv = Make(5, false);
  std::vector<int32_t> a, b;
  EXPECT_TRUE(kv.Grow(&a, 9));  // 3 blocks
  EXPECT_EQ(a.size(), 3u);
  EXPECT_TRUE(kv.Grow(&a, 12));  // still 3
  EXPECT_EQ(kv.num_used_blocks(), 3);
  EXPECT_FALSE(kv.Grow(&b, 12));  // needs 3, 2 free: takes nothing
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(kv.num_free_blocks(), 2);
  EXPECT_TRUE(kv.Grow(&b, 8));
  kv.Release(&a);
  kv.Release(&b);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(kv.num_used_blocks(), 0);
  EXPECT_EQ(kv.num_free_blocks(), 5);
}

TEST(KvCacheManager, SlotsAreHandedOutOnce) {
  KvCacheManager kv = Make(4, true);
  const int s0 = kv.AllocateSlot(), s1 = kv.AllocateSlot();
  EXPECT_NE(s0, s1);
  EXPECT_EQ(kv.AllocateSlot(), -1);  // slots 2, 3 are for snapshots
  kv.FreeSlot(s0);
  EXPECT_EQ(kv.AllocateSlot(), s0);
  EXPECT_EQ(kv.num_snapshot_slots(), 2);
}

TEST(KvCacheManager, HitsAreSharedAndReferenceCounted) {
  KvCacheManager kv = Make(8, false);
  Chain c(Iota(10, 100));  // 2 full blocks + 2 tokens
  std::vector<int32_t> t1 = Fill(kv, c);
  EXPECT_EQ(kv.num_cached_blocks(), 2);
  PrefixHit hit = kv.FindPrefix(c.Keys());
  ASSERT_EQ(hit.blocks.size(), 2u);
  EXPECT_EQ(hit.num_tokens, 8);
  EXPECT_EQ(hit.snapshot_slot, -1);  // no sliding layers: no snapshot needed
  EXPECT_EQ(hit.blocks[0], t1[0]);
  EXPECT_EQ(hit.blocks[1], t1[1]);
  kv.Acquire(hit.blocks);
  std::vector<int32_t> t2 = hit.blocks;
  EXPECT_TRUE(kv.Grow(&t2, 10));
  EXPECT_EQ(kv.num_used_blocks(), 4);  // 3 of t1 + 1 new
  kv.Release(&t1);
  EXPECT_EQ(kv.num_used_blocks(), 3);  // shared blocks still held by t2
  kv.Release(&t2);
  EXPECT_EQ(kv.num_used_blocks(), 0);
  EXPECT_EQ(kv.num_cached_blocks(), 2);  // cached, free, reusable
  EXPECT_EQ(kv.FindPrefix(c.Keys()).blocks.size(), 2u);
}

TEST(KvCacheManager, HitIdentityIsExactNotJustTheHash) {
  KvCacheManager kv = Make(8, false);
  Chain c(Iota(8, 100));
  std::vector<int32_t> t = Fill(kv, c);
  // A key with the right hash but other tokens (a forged collision) does not hit.
  Chain other(Iota(8, 500));
  auto forged = other.Keys();
  forged[0].hash = c.hashes[0];
  EXPECT_TRUE(kv.FindPrefix(forged).blocks.empty());
  // Another salt (extra key) does not hit either.
  Chain salted(Iota(8, 100), "tenant");
  EXPECT_TRUE(kv.FindPrefix(salted.Keys()).blocks.empty());
  // The first block alone does.
  EXPECT_EQ(kv.FindPrefix(std::vector<BlockKey>{c.Keys()[0]}).blocks.size(), 1u);
  kv.Release(&t);
}

// Block 0 of chain A is evicted and its physical block reused for other content; A's block 1 is
// still cached but must not be reachable behind the new content, even for a query whose block 1
// key (tokens and hash) equals A's.
TEST(KvCacheManager, EvictedParentsInvalidateTheirChildren) {
  KvCacheManager kv = Make(3, false);
  Chain a(Iota(8, 100));
  std::vector<int32_t> ta = Fill(kv, a);
  kv.Release(&ta);  // free list, reuse order: the never-used block, a1, a0
  std::vector<int32_t> tmp;
  ASSERT_TRUE(kv.Grow(&tmp, 12));  // the whole pool: evicts all of A
  kv.Release(&tmp);
  EXPECT_EQ(kv.FindPrefix(a.Keys()).blocks.size(), 0u);  // all of A was evicted

  // Now evict only block 0 of A and keep block 1.
  std::vector<int32_t> tb = Fill(kv, a);
  const int32_t a0 = tb[0], a1 = tb[1];
  kv.Release(&tb);
  // Reuse order: the uncached block, a1, a0. Hold a1 while a0's block is reused.
  std::vector<int32_t> hold = {a1};
  kv.Acquire(hold);
  std::vector<int32_t> grab;
  ASSERT_TRUE(kv.Grow(&grab, 8));  // the unused block and a0
  EXPECT_NE(std::find(grab.begin(), grab.end(), a0), grab.end());
  // Put other content into a0's block, registered as a first block.
  Chain b(Iota(4, 900));
  const size_t pos = static_cast<size_t>(std::find(grab.begin(), grab.end(), a0) - grab.begin());
  EXPECT_EQ(kv.Register(grab[pos], -1, b.Keys()[0]), a0);
  // Query: b's block 0 then A's block 1 key, with a chain hash computed after b.
  std::vector<BlockKey> q = {b.Keys()[0], a.Keys()[1]};
  q[1].hash = a.hashes[1];
  PrefixHit hit = kv.FindPrefix(q);
  EXPECT_EQ(hit.blocks.size(), 1u) << "a1 was computed after other content than b";
  kv.Release(&grab);
  kv.Release(&hold);
}

TEST(KvCacheManager, HitsMustEndAtASnapshotWhenSlidingLayersExist) {
  KvCacheManager kv = Make(8, true, 2);
  Chain c(Iota(13, 100));  // 3 full blocks
  std::vector<int32_t> t = Fill(kv, c);
  EXPECT_TRUE(kv.FindPrefix(c.Keys()).blocks.empty()) << "no snapshot, no hit";
  const int slot = kv.ReserveSnapshot(t[1]);
  EXPECT_GE(slot, 2);  // a snapshot slot, not a sequence slot
  EXPECT_EQ(kv.ReserveSnapshot(t[1]), -1);  // already has one
  PrefixHit hit = kv.FindPrefix(c.Keys());
  EXPECT_EQ(hit.blocks.size(), 2u);  // blocks 0-1: the chain up to the snapshot
  EXPECT_EQ(hit.snapshot_slot, slot);
  // Two more snapshots with two slots: the least recently used one goes.
  const int s2 = kv.ReserveSnapshot(t[2]);
  EXPECT_NE(s2, slot);
  EXPECT_EQ(kv.FindPrefix(c.Keys()).blocks.size(), 3u);
  const auto keys = c.Keys();
  kv.FindPrefix(std::vector<BlockKey>(keys.begin(), keys.begin() + 2));  // touches t[1]'s
  EXPECT_EQ(kv.ReserveSnapshot(t[0]), s2);  // t[2]'s was least recently used
  EXPECT_EQ(kv.num_snapshots(), 2);
  EXPECT_EQ(kv.FindPrefix(c.Keys()).blocks.size(), 2u);
  kv.Release(&t);
  // Evicting a block drops its snapshot.
  std::vector<int32_t> all;
  ASSERT_TRUE(kv.Grow(&all, 8 * kBs));
  EXPECT_EQ(kv.num_snapshots(), 0);
  EXPECT_EQ(kv.num_cached_blocks(), 0);
  kv.Release(&all);
}

TEST(KvCacheManager, DuplicateContentMapsToTheCachedBlock) {
  KvCacheManager kv = Make(8, true);
  Chain c(Iota(8, 100));
  std::vector<int32_t> first = Fill(kv, c);
  // A second sequence computed the same content in its own blocks (it had no hit).
  std::vector<int32_t> second;
  ASSERT_TRUE(kv.Grow(&second, 8));
  auto keys = c.Keys();
  const int32_t c0 = kv.Register(second[0], -1, keys[0]);
  EXPECT_EQ(c0, first[0]);
  EXPECT_EQ(kv.Register(second[1], c0, keys[1]), first[1]);
  EXPECT_EQ(kv.num_cached_blocks(), 2);
  kv.Release(&second);  // its private duplicates are reused first
  std::vector<int32_t> next;
  ASSERT_TRUE(kv.Grow(&next, 4));
  EXPECT_TRUE(next[0] != first[0] && next[0] != first[1]);
  kv.Release(&next);
  kv.Release(&first);
}

}  // namespace
}  // namespace gs
