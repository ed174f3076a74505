// The one interface an engine calls. The CPU runner (fp32 reference) and the CUDA runner
// implement it; the engine owns the KV block allocation and passes block tables in the Batch.
#pragma once

#include <vector>

#include "model/config.h"
#include "runtime/batch.h"
#include "util/status.h"

namespace gs {

struct KvCacheSpec {
  int max_sequences = 1;        // KV slots (sliding rings are allocated per slot)
  int block_size = 16;          // tokens per global-layer KV block
  int num_global_blocks = 0;    // size of the paged pool shared by all sequences
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const KvCacheSpec& kv_spec() const = 0;

  // Runs the new tokens through the model, appends their K/V to the cache, and writes the final
  // (softcapped) logits of batch.logits_indices into `logits`, row-major [indices, vocab].
  virtual Status Forward(const Batch& batch, std::vector<float>* logits) = 0;
};

}  // namespace gs
