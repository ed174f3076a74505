// Keys of the prefix cache: a chain hash over full blocks of token ids, plus an "extra" string for
// content the ids do not identify (image hashes, the request's cache salt).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "engine/request.h"

namespace gs {

// Hash of a block given its parent's hash (0 for the first block). Only an index into the cache:
// a hit is confirmed by comparing tokens, extra and parent identity (kv_cache.h).
uint64_t HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens, std::string_view extra);

// Extra key of block `index` (positions [index·block_size, (index+1)·block_size)): the cache salt
// for block 0 and the hashes of the content spans that overlap the block.
std::string BlockExtraKey(const Request& request, int index, int block_size);

}  // namespace gs
