#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace gs {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Batch SingleSequenceBatch(const std::vector<int32_t>& ids, int start, int count,
                          const std::vector<int32_t>& blocks, bool all_logits) {
  Batch b;
  b.token_ids.assign(ids.begin() + start, ids.begin() + start + count);
  BatchSequence s;
  s.slot = 0;
  s.first_token = 0;
  s.num_tokens = count;
  s.start_position = start;
  s.block_table = blocks;
  b.sequences.push_back(std::move(s));
  if (all_logits) {
    b.logits_indices.resize(static_cast<size_t>(count));
    std::iota(b.logits_indices.begin(), b.logits_indices.end(), 0);
  } else {
    b.logits_indices = {count - 1};
  }
  return b;
}

// The images of prompt[start, start + count) as batch-local spans.
void AddImageSpans(const std::vector<PromptImage>& images, int start, int count, Batch* b) {
  for (const PromptImage& im : images) {
    if (im.first_token >= start && im.first_token < start + count) {
      b->image_spans.push_back({im.first_token - start, im.num_tokens, im.embeddings});
    }
  }
}

// A chunk ending inside an image grows to the image's end.
int ChunkEnd(const std::vector<PromptImage>& images, int start, int chunk, int n) {
  int end = std::min(start + chunk, n);
  for (const PromptImage& im : images) {
    if (im.first_token < end && im.first_token + im.num_tokens > end) end = im.first_token + im.num_tokens;
  }
  return std::min(end, n);
}

}  // namespace

KvCacheSpec KvSpecForSingleSequence(int total_tokens, int block_size) {
  KvCacheSpec spec;
  spec.max_sequences = 1;
  spec.block_size = block_size;
  spec.num_global_blocks = std::max(1, (total_tokens + block_size - 1) / block_size);
  return spec;
}

Expected<GenerateResult> Generate(ModelRunner& runner, const std::vector<int32_t>& prompt,
                                  const GenerateOptions& options) {
  if (prompt.empty()) return MakeError("the prompt is empty");
  const KvCacheSpec& spec = runner.kv_spec();
  const int total = static_cast<int>(prompt.size()) + options.max_tokens;
  if (static_cast<int64_t>(spec.num_global_blocks) * spec.block_size < total) {
    return MakeError("prompt (", prompt.size(), ") + max_tokens (", options.max_tokens,
                     ") exceeds the KV cache of ", spec.num_global_blocks * spec.block_size, " tokens");
  }
  std::vector<int32_t> blocks(static_cast<size_t>(spec.num_global_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  const int vocab = runner.config().vocab_size;
  const int n = static_cast<int>(prompt.size());
  const int chunk = options.prefill_chunk > 0 ? options.prefill_chunk : n;

  GenerateResult result;
  std::vector<float> logits, last;
  auto t0 = std::chrono::steady_clock::now();
  int prev_end = 0;
  for (const PromptImage& im : options.images) {
    if (im.first_token < prev_end || im.num_tokens <= 0 || im.first_token + im.num_tokens > n) {
      return MakeError("image at prompt token ", im.first_token, " (", im.num_tokens,
                       " tokens) overlaps another or lies outside the prompt of ", n, " tokens");
    }
    prev_end = im.first_token + im.num_tokens;
  }
  for (int start = 0; start < n;) {
    const int count = ChunkEnd(options.images, start, chunk, n) - start;
    Batch b = SingleSequenceBatch(prompt, start, count, blocks, options.prompt_logits);
    AddImageSpans(options.images, start, count, &b);
    start += count;
    GS_RETURN_IF_ERROR(runner.Forward(b, &logits));
    if (options.prompt_logits) result.prompt_logits.insert(result.prompt_logits.end(), logits.begin(), logits.end());
    last.assign(logits.end() - vocab, logits.end());
  }
  result.prefill_seconds = SecondsSince(t0);

  Sampler sampler(options.sampling);
  std::vector<int32_t> seq = prompt;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < options.max_tokens; ++i) {
    const int32_t next = sampler.Sample(last);
    result.tokens.push_back(next);
    seq.push_back(next);
    const bool stop = !options.ignore_eos && std::find(options.stop_ids.begin(),
                                                       options.stop_ids.end(), next) != options.stop_ids.end();
    if (stop || i + 1 == options.max_tokens) break;
    Batch b = SingleSequenceBatch(seq, static_cast<int>(seq.size()) - 1, 1, blocks, false);
    GS_RETURN_IF_ERROR(runner.Forward(b, &logits));
    last = logits;
  }
  result.decode_seconds = SecondsSince(t0);
  return result;
}

}  // namespace gs
