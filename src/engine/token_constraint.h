// Guided decoding, generically: a per-sequence object the engine consults before sampling each
// output token. It restricts the row of logits (disallowed tokens to -inf) and is told which token
// was chosen, so it can track where in its grammar the output is. The engine knows nothing of
// the grammar; the server builds constraints (e.g. tool_choice "required": server/
// tool_call_constraint.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace gs {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logits of tokens that may not come next to -inf. Leaves at least one token finite
  // (a constraint that cannot continue leaves the row alone rather than emptying it).
  virtual void Mask(std::span<float> logits) = 0;
  // The token that was sampled (after Mask).
  virtual void Accept(int32_t token) = 0;
};

// Makes a fresh constraint for each of a request's n sequences.
using TokenConstraintFactory = std::function<std::unique_ptr<TokenConstraint>()>;

}  // namespace gs
