#include "engine/device_sampling.h"

namespace gs {

std::optional<GpuSamplingParams> DeviceSamplingFor(const Sequence& s) {
  const Request& req = s.request->request;
  const SamplingParams& p = s.sampler.params();
  if (p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 ||
      !p.logit_bias.empty() || s.constraint || req.top_logprobs > 0 ||
      !s.stop.ids_to_mask(s.num_output()).empty()) {
    return std::nullopt;
  }
  GpuSamplingParams g;
  g.temperature = static_cast<float>(p.temperature);
  g.top_k = p.top_k;
  g.top_p = static_cast<float>(p.top_p);
  g.min_p = static_cast<float>(p.min_p);
  g.seed = p.seed.value_or(0);  // the engine always sets it (request seed + sequence index)
  g.step = static_cast<uint64_t>(s.num_output());
  return g;
}

}  // namespace gs
