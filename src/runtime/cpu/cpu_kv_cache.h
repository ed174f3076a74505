// fp32 KV storage of the CPU runner (DESIGN §3): global layers in a paged pool addressed by each
// sequence's block table; sliding layers in a ring of `sliding_window` positions per slot.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "runtime/model_runner.h"

namespace gs::cpu {

class KvCache {
 public:
  KvCache(const ModelConfig& config, const KvCacheSpec& spec);

  // K and V rows (num_kv_heads × head_dim floats) of `layer` at `position` of a sequence.
  float* Key(int layer, const BatchSequence& seq, int position);
  float* Value(int layer, const BatchSequence& seq, int position);

  // Copies the sliding-layer rings of slot `src` over those of slot `dst`.
  void CopySlot(int src, int dst);

  size_t bytes() const;

 private:
  float* Row(int layer, const BatchSequence& seq, int position, bool value);

  struct LayerStore {
    bool sliding = false;
    int row = 0;  // floats per position
    std::vector<float> k, v;
  };
  KvCacheSpec spec_;
  int window_ = 0;
  std::vector<LayerStore> layers_;
};

}  // namespace gs::cpu
