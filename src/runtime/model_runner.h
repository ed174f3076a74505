// The one interface an engine calls. The CPU runner (fp32 reference) and the CUDA runner
// implement it; the engine owns the KV block allocation and passes block tables in the Batch.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "runtime/batch.h"
#include "util/status.h"
#include "vision/image_processor.h"

namespace gs {

struct KvCacheSpec {
  int max_sequences = 1;        // KV slots (sliding rings are allocated per slot)
  int block_size = 16;          // tokens per global-layer KV block
  int num_global_blocks = 0;    // size of the paged pool shared by all sequences
};

// Token selection a runner can do where the logits are (issue 4): SamplingParams without
// penalties, logit bias or masks. The randomness is a pure function of (seed, step, token id), so
// a sequence's tokens do not depend on the batch; the CUDA kernel and the default (CPU) version
// below use different generators, so the same seed gives different samples on each.
struct GpuSamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
  int top_k = 0;             // 0 = off; 1 = greedy
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  uint64_t seed = 0;
  uint64_t step = 0;         // tokens the sequence generated before this one
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const KvCacheSpec& kv_spec() const = 0;

  // Runs the new tokens through the model, appends their K/V to the cache, and writes the final
  // (softcapped) logits of batch.logits_indices into `logits`, row-major [indices, vocab].
  virtual Status Forward(const Batch& batch, std::vector<float>* logits) = 0;

  // Forward, then one token per logits row: ids[r] drawn with per_row[r]; logprobs (may be null)
  // [r] = log_softmax(raw logits)[ids[r]]; logits (may be null) as Forward writes them, for rows
  // the caller samples itself. The default runs Forward and samples on the host (sampling.h with
  // a generator seeded from (seed, step)); runners with samples_on_device() do it where the
  // logits are and copy only what was asked for.
  virtual Status ForwardSample(const Batch& batch, const std::vector<GpuSamplingParams>& per_row,
                               std::vector<int32_t>* ids, std::vector<float>* logprobs,
                               std::vector<float>* logits);
  // Whether ForwardSample saves the logits' trip to the host (the engine uses it only then).
  virtual bool samples_on_device() const { return false; }

  // Copies the sliding-layer KV ring of slot `src` over that of slot `dst` (every sliding layer,
  // all `sliding_window` positions). The engine keeps prefix-cache snapshots of sliding state in
  // spare slots with it (src/engine/kv_cache.h explains why). A runner without it returns false
  // from supports_slot_copy(), and the engine then turns prefix caching off for models that have
  // sliding layers.
  virtual bool supports_slot_copy() const { return false; }

  // Whether EncodeImage works (a vision encoder with its weights is loaded). The engine refuses
  // requests with images up front when it does not.
  virtual bool supports_vision() const { return false; }
  // Soft-token embeddings [image.num_soft_tokens, hidden] of one preprocessed image, for
  // Batch::image_spans. A runner without a vision encoder says so.
  virtual Expected<std::vector<float>> EncodeImage(const ProcessedImage& /*image*/) {
    return MakeError("this runner has no vision encoder (image input runs on the CPU runner)");
  }
  // Soft tokens of each image (in order) from one encoder pass where the runner batches images
  // (the CUDA encoder); this default encodes them one at a time. The engine passes at most
  // kMaxImagesPerEncode images / kMaxPatchesPerEncode patches (vision/encode_groups.h). An error
  // returns no embeddings at all; its message names the failing image's index in `images`.
  virtual Expected<std::vector<std::vector<float>>> EncodeImages(
      const std::vector<const ProcessedImage*>& images);
  virtual Status CopySlot(int /*src*/, int /*dst*/) {
    return MakeError("this runner cannot copy KV slots");
  }
};

}  // namespace gs
