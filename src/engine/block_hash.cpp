#include "engine/block_hash.h"

namespace gs {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;

uint64_t Mix(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

// splitmix64's finaliser, so nearby inputs spread over the whole table.
uint64_t Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens, std::string_view extra) {
  uint64_t h = Mix(kFnvOffset, &parent_hash, sizeof parent_hash);
  h = Mix(h, tokens.data(), tokens.size_bytes());
  const uint64_t extra_size = extra.size();
  h = Mix(h, &extra_size, sizeof extra_size);
  h = Mix(h, extra.data(), extra.size());
  return Finalize(h);
}

std::string BlockExtraKey(const Request& request, int index, int block_size) {
  std::string key;
  if (index == 0 && !request.cache_salt.empty()) key = "salt:" + request.cache_salt + ";";
  const int64_t begin = int64_t{index} * block_size, end = begin + block_size;
  for (const ContentHash& c : request.content_hashes) {
    if (c.start < end && int64_t{c.start} + c.length > begin) {
      // The span's offset is part of the key: the same image at another place is other content.
      key += "content:" + std::to_string(c.start) + ":" + std::to_string(c.length) + ":" + c.hash + ";";
    }
  }
  return key;
}

}  // namespace gs
