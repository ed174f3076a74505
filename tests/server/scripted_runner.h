// TEST-ONLY model double. The demo model has random weights, so its output never contains a
// tool call or a thinking block. ScriptedRunner wraps the real CPU runner (every forward step
// still runs the model and the KV cache) and, for a sequence whose tokens contain a trigger,
// replaces that row's logits so that greedy decoding writes a fixed script and then <turn|>.
// Everything after the logits — sampling, stop rules, detokenization, the reasoning and tool-call
// parsers, SSE — is the real server path. Sequences without a trigger are untouched.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "runtime/model_runner.h"

namespace gs::test {

struct Script {
  std::vector<int32_t> trigger;  // token ids that must appear in the sequence (prompt)
  std::vector<int32_t> output;   // what the model is made to write
};

class ScriptedRunner : public ModelRunner {
 public:
  ScriptedRunner(std::unique_ptr<ModelRunner> inner, std::vector<Script> scripts, int32_t end_token)
      : inner_(std::move(inner)), scripts_(std::move(scripts)), end_token_(end_token) {}

  const ModelConfig& config() const override { return inner_->config(); }
  const KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  bool supports_slot_copy() const override { return inner_->supports_slot_copy(); }
  bool supports_vision() const override { return inner_->supports_vision(); }
  Expected<std::vector<float>> EncodeImage(const ProcessedImage& image) override {
    return inner_->EncodeImage(image);
  }
  Status CopySlot(int src, int dst) override {
    history_[dst] = history_[src];  // a snapshot carries the tokens it was computed from
    return inner_->CopySlot(src, dst);
  }

  Status Forward(const Batch& batch, std::vector<float>* logits) override {
    for (const BatchSequence& s : batch.sequences) {
      std::vector<int32_t>& h = history_[s.slot];
      h.resize(static_cast<size_t>(s.start_position), -1);
      h.insert(h.end(), batch.token_ids.begin() + s.first_token,
               batch.token_ids.begin() + s.first_token + s.num_tokens);
    }
    GS_RETURN_IF_ERROR(inner_->Forward(batch, logits));
    const size_t vocab = static_cast<size_t>(config().vocab_size);
    for (size_t row = 0; row < batch.logits_indices.size(); ++row) {
      const int32_t index = batch.logits_indices[row];
      for (const BatchSequence& s : batch.sequences) {
        if (index < s.first_token || index >= s.first_token + s.num_tokens) continue;
        const std::vector<int32_t>& h = history_[s.slot];
        const size_t len = static_cast<size_t>(s.start_position + (index - s.first_token) + 1);
        const int32_t forced = Next(std::vector<int32_t>(h.begin(), h.begin() + len));
        if (forced >= 0) {
          float* r = logits->data() + row * vocab;
          std::fill(r, r + vocab, -30.0f);
          r[forced] = 30.0f;
        }
      }
    }
    return Ok();
  }

 private:
  // The script token that follows `h`, or -1 when no script applies.
  int32_t Next(const std::vector<int32_t>& h) const {
    for (const Script& sc : scripts_) {
      if (std::search(h.begin(), h.end(), sc.trigger.begin(), sc.trigger.end()) == h.end()) continue;
      // How much of the script is already written: the longest script prefix ending `h`.
      for (size_t k = std::min(sc.output.size(), h.size()); k > 0; --k) {
        if (std::equal(sc.output.begin(), sc.output.begin() + static_cast<std::ptrdiff_t>(k),
                       h.end() - static_cast<std::ptrdiff_t>(k))) {
          return k == sc.output.size() ? end_token_ : sc.output[k];
        }
      }
      return sc.output.empty() ? end_token_ : sc.output[0];
    }
    return -1;
  }

  std::unique_ptr<ModelRunner> inner_;
  std::vector<Script> scripts_;
  int32_t end_token_;
  std::map<int, std::vector<int32_t>> history_;  // tokens per KV slot
};

}  // namespace gs::test
