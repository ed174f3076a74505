// Writing a whole checkpoint directory safely (convert, quantize): everything goes into
// `<to>.partial` first and is renamed into place only when complete, so a failure never leaves a
// half-written model; tensors are streamed into shards of bounded size with an index.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "util/status.h"

namespace gs {

struct OutputTensor {
  TensorPlan plan;
  // Returns the tensor's bytes (into scratch, or a span into memory that outlives the call).
  std::function<Expected<std::span<const uint8_t>>(std::vector<uint8_t>& scratch)> produce;
  // Bytes of the mapped source that `produce` reads besides the span it returns (the inputs of
  // a dequantized or quantized tensor): they count toward releasing the source's pages.
  uint64_t source_bytes = 0;
};

class CheckpointWriter {
 public:
  // Fails if `to` exists and `overwrite` is false, naming the path.
  static Expected<std::unique_ptr<CheckpointWriter>> Begin(const std::string& to, bool overwrite);
  ~CheckpointWriter();  // removes the partial directory unless Commit() succeeded

  // One model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json
  // when the total exceeds max_shard_bytes. Shows a progress bar. With `source` (the mapped
  // checkpoint the tensors are produced from), its pages are released as they are consumed
  // (SourcePages), so the RSS does not grow with the checkpoint: what is written goes out with
  // write() from the source mapping or one reused scratch buffer and is never held.
  Status WriteTensors(const std::vector<OutputTensor>& tensors, uint64_t max_shard_bytes,
                      const std::string& progress_label, const TensorStore* source = nullptr);
  Status WriteJson(const std::string& name, const nlohmann::json& value);
  // Copies every regular file of `from_dir` except those `skip` says no to.
  Status CopyOtherFiles(const std::string& from_dir,
                        const std::function<bool(const std::string& name)>& skip);
  // Copies what a conversion keeps as is (tokenizer, templates, generation and processor
  // configs): everything but weights, their index, config.json, hf_quant_config.json and *.tmp.
  Status CopyNonWeightFiles(const std::string& from_dir);
  Status Commit();

  const std::string& partial_dir() const { return partial_; }

 private:
  CheckpointWriter(std::string to, std::string partial, bool overwrite)
      : to_(std::move(to)), partial_(std::move(partial)), overwrite_(overwrite) {}
  std::string to_, partial_;
  bool overwrite_ = false;
  bool committed_ = false;
};

}  // namespace gs
