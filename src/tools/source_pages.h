// Bounded RSS for tools that stream a memory-mapped checkpoint (convert, quantize). Every page
// they read stays mapped into the process until it is released, so without help their RSS grows
// to the size of the checkpoint (17 GB for gemma-4-26B-A4B). SourcePages counts the bytes read
// from the source and drops all of its resident pages whenever `budget` bytes have been read
// since the last drop: reading then adds at most about `budget` plus the largest single read.
#pragma once

#include <algorithm>
#include <cstdint>

#include "model/safetensors.h"

namespace gs {

class SourcePages {
 public:
  static constexpr uint64_t kDefaultBudget = uint64_t{64} << 20;
  // A fault on a mapping maps the neighbouring cached pages too (Linux fault_around_bytes, 64 KiB
  // by default), so even a 4-byte scalar can add this much to the RSS.
  static constexpr uint64_t kFaultAroundBytes = uint64_t{64} << 10;

  // A null store makes every call a no-op (a writer with no mapped source).
  explicit SourcePages(const TensorStore* store, uint64_t budget = kDefaultBudget)
      : store_(store), budget_(budget) {}

  void Read(uint64_t bytes) {
    if (bytes == 0) return;
    read_ += std::max(bytes, kFaultAroundBytes);
    if (read_ >= budget_) Release();
  }

  void Release() {
    if (store_) store_->ReleasePages();
    read_ = 0;
  }

 private:
  const TensorStore* store_;
  uint64_t budget_;
  uint64_t read_ = 0;
};

}  // namespace gs
