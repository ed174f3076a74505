// Which sequences' next token the runner may pick where the logits are (ModelRunner::
// ForwardSample, issue 4), and with what. A sequence qualifies when its next token needs only
// temperature / top-k / top-p / min-p and at most the chosen token's logprob: no penalties, no
// logit bias, no guided-decoding constraint, no top_logprobs, and no min_tokens masking of stop
// ids at this point. The answer depends on the sequence alone (never on the rest of the batch),
// and the device's randomness on (seed, step = tokens generated so far) alone, so a seeded
// request gives the same tokens however it is batched.
#pragma once

#include <optional>

#include "engine/sequence.h"
#include "runtime/model_runner.h"

namespace gs {

std::optional<GpuSamplingParams> DeviceSamplingFor(const Sequence& s);

}  // namespace gs
