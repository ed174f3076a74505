#include "runtime/batch.h"

namespace gs {

Status CheckImageSpans(const Batch& b, int hidden) {
  int prev_end = 0;
  for (size_t i = 0; i < b.image_spans.size(); ++i) {
    const BatchImageSpan& s = b.image_spans[i];
    const int64_t end = int64_t{s.first_token} + s.num_tokens;
    if (s.num_tokens <= 0 || s.first_token < prev_end || end > b.num_tokens()) {
      return MakeError("batch: image span ", i, " (tokens ", s.first_token, "..", end,
                       ") is empty, overlaps another or leaves the batch");
    }
    if (s.embeddings.size() != static_cast<size_t>(s.num_tokens) * hidden) {
      return MakeError("batch: image span ", i, " has ", s.embeddings.size(),
                       " embedding values, expected ", s.num_tokens, " x ", hidden);
    }
    bool inside = false;
    for (const BatchSequence& q : b.sequences) {
      inside |= s.first_token >= q.first_token && end <= int64_t{q.first_token} + q.num_tokens;
    }
    if (!inside) return MakeError("batch: image span ", i, " crosses a sequence boundary");
    prev_end = static_cast<int>(end);
  }
  return Ok();
}

}  // namespace gs
