#include "runtime/model_runner.h"

#include <span>

#include "runtime/sampling.h"

namespace gs {
namespace {

// splitmix64's finalizer: one seed per (seed, step) for the host generator.
uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Status ModelRunner::ForwardSample(const Batch& batch, const std::vector<GpuSamplingParams>& per_row,
                                  std::vector<int32_t>* ids, std::vector<float>* logprobs,
                                  std::vector<float>* logits) {
  const size_t rows = batch.logits_indices.size();
  if (per_row.size() != rows) {
    return MakeError("ForwardSample: ", per_row.size(), " sampling rows for ", rows,
                     " logits rows");
  }
  std::vector<float> local;
  std::vector<float>& all = logits ? *logits : local;
  GS_RETURN_IF_ERROR(Forward(batch, &all));
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  ids->resize(rows);
  if (logprobs) logprobs->resize(rows);
  for (size_t r = 0; r < rows; ++r) {
    const GpuSamplingParams& g = per_row[r];
    SamplingParams p;
    p.temperature = g.temperature;
    p.top_k = g.top_k;
    p.top_p = g.top_p;
    p.min_p = g.min_p;
    p.seed = Mix(g.seed ^ Mix(g.step));
    const std::span<const float> row(all.data() + r * vocab, vocab);
    (*ids)[r] = Sampler(p).Sample(row);
    if (logprobs) (*logprobs)[r] = ComputeLogprobs(row, (*ids)[r], 0).chosen;
  }
  return Ok();
}

Expected<std::vector<std::vector<float>>> ModelRunner::EncodeImages(
    const std::vector<const ProcessedImage*>& images) {
  std::vector<std::vector<float>> out;
  out.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i] == nullptr) return MakeError("EncodeImages: image ", i, " is null");
    Expected<std::vector<float>> e = EncodeImage(*images[i]);
    if (!e.ok()) return MakeError("image ", i, " of ", images.size(), ": ", e.error().message);
    out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace gs
