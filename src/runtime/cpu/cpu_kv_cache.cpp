#include "runtime/cpu/cpu_kv_cache.h"

#include <algorithm>

namespace gs::cpu {

KvCache::KvCache(const ModelConfig& config, const KvCacheSpec& spec)
    : spec_(spec), window_(config.sliding_window) {
  for (const LayerConfig& lc : config.layers) {
    LayerStore s;
    s.sliding = lc.kind == LayerKind::kSliding;
    s.row = lc.num_kv_heads * lc.head_dim;
    const size_t positions = s.sliding
                                 ? static_cast<size_t>(spec.max_sequences) * window_
                                 : static_cast<size_t>(spec.num_global_blocks) * spec.block_size;
    s.k.assign(positions * static_cast<size_t>(s.row), 0.0f);
    s.v.assign(positions * static_cast<size_t>(s.row), 0.0f);
    layers_.push_back(std::move(s));
  }
}

float* KvCache::Row(int layer, const BatchSequence& seq, int position, bool value) {
  LayerStore& s = layers_[static_cast<size_t>(layer)];
  size_t index;
  if (s.sliding) {
    index = static_cast<size_t>(seq.slot) * window_ + static_cast<size_t>(position % window_);
  } else {
    const int32_t block = seq.block_table[static_cast<size_t>(position / spec_.block_size)];
    index = static_cast<size_t>(block) * spec_.block_size + static_cast<size_t>(position % spec_.block_size);
  }
  return (value ? s.v : s.k).data() + index * static_cast<size_t>(s.row);
}

float* KvCache::Key(int layer, const BatchSequence& seq, int position) {
  return Row(layer, seq, position, false);
}

float* KvCache::Value(int layer, const BatchSequence& seq, int position) {
  return Row(layer, seq, position, true);
}

void KvCache::CopySlot(int src, int dst) {
  for (LayerStore& s : layers_) {
    if (!s.sliding) continue;
    const size_t ring = static_cast<size_t>(window_) * static_cast<size_t>(s.row);
    for (std::vector<float>* store : {&s.k, &s.v}) {
      std::copy_n(store->begin() + static_cast<std::ptrdiff_t>(src * ring), ring,
                  store->begin() + static_cast<std::ptrdiff_t>(dst * ring));
    }
  }
}

size_t KvCache::bytes() const {
  size_t b = 0;
  for (const auto& s : layers_) b += (s.k.size() + s.v.size()) * sizeof(float);
  return b;
}

}  // namespace gs::cpu
