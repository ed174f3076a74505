// What a caller hands the engine (Request) and what comes back (a stream of TokenEvents), in
// engine terms only: token ids, never JSON or text (DESIGN §1).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/token_constraint.h"
#include "runtime/sampling.h"
#include "vision/image_processor.h"

namespace gs {

using RequestId = uint64_t;

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* FinishReasonName(FinishReason reason);  // "", "stop", "length", "abort", "error"

// One generated token of one of the request's sequences; the last event of a sequence carries
// its finish reason (and usually its last token; abort and error events may have none).
struct TokenEvent {
  RequestId request_id = 0;
  int index = 0;       // which of the n sequences
  int32_t token = -1;  // -1: no token in this event
  float logprob = 0.0f;                    // when Request::logprobs
  std::vector<TokenLogprob> top_logprobs;  // when Request::top_logprobs > 0

  FinishReason finish = FinishReason::kNone;
  // Set on the final event:
  int32_t stop_token = -1;  // the stop / eos id that ended it
  std::string stop_string;  // the stop string that ended it...
  // ...which starts at this byte offset of the output text (as the TextDecoder's stream for the
  // sequence produced it): the caller cuts the text there. A streaming caller must hold back the
  // last (longest stop string - 1) bytes until they can no longer start a stop string.
  size_t stop_text_offset = 0;
  std::string error;             // kError: what failed
  int num_prompt_tokens = 0;
  int num_cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache (first admission)
  int num_output_tokens = 0;
};

// Identifies prompt content that token ids alone do not (the placeholder tokens of an image):
// positions [start, start + length) of the prompt hold content whose hash is `hash` (e.g. a
// SHA-256 of the pixels). Prefix-cache blocks overlapping the span include it in their key.
struct ContentHash {
  int start = 0;
  int length = 0;
  std::string hash;
};

// An image in the prompt (issue 7): prompt[first_token, first_token + image->num_soft_tokens) are
// its <|image|> tokens (the caller expanded the placeholder). The engine runs the runner's vision
// encoder on it right before the step that prefills those tokens (again after a preemption), puts
// the embeddings in their place, and never splits the span across prefill chunks; the prefix
// cache keys the blocks it touches (and, through the hash chain, every later block) by a hash of
// the preprocessed pixels, so requests with different images never share KV.
struct RequestImage {
  int first_token = 0;
  std::shared_ptr<const ProcessedImage> image;

  int end() const { return first_token + (image ? image->num_soft_tokens : 0); }
};

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams sampling;  // start from SamplingDefaults(config.generation), then override
  int n = 1;                // independent sequences sharing the prompt (seeds: seed + index)

  std::optional<int> max_tokens;  // unset = up to max_model_len
  int min_tokens = 0;             // stop tokens and stop strings are ignored before this many
  bool ignore_eos = false;        // the config's eos ids do not stop (stop_token_ids still do)
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop;  // stop strings; need EngineConfig::text_decoder
  bool skip_special_tokens = true;  // whether special tokens are left out of that text

  bool logprobs = false;  // the chosen token's log-probability (of the raw logits)
  int top_logprobs = 0;   // and the k most likely tokens, 0..20

  // Guided decoding: each sequence gets its own constraint, consulted before every sampled token
  // (after the min_tokens stop masking, before logit bias, penalties and sampling).
  TokenConstraintFactory constraint;

  std::vector<RequestImage> images;  // in prompt order, not overlapping
  std::vector<ContentHash> content_hashes;  // the engine adds one per image
  std::string cache_salt;  // requests share cached prefixes only with the same salt

  // When set, events go to this callback instead of the RequestStream queue. It runs on the
  // engine thread: keep it short; it may call Engine::Cancel but nothing that waits on the engine.
  std::function<void(const TokenEvent&)> on_event;
};

// The caller's end of a request: a queue of its events, filled by the engine thread.
class RequestStream {
 public:
  RequestStream(RequestId id, int num_sequences,
                std::function<void(const TokenEvent&)> on_event = nullptr)
      : id_(id), on_event_(std::move(on_event)), unfinished_(num_sequences) {}

  RequestId id() const { return id_; }

  // Waits up to `timeout` for events and returns all that are pending (empty on timeout or once
  // the stream is done).
  std::vector<TokenEvent> Read(std::chrono::milliseconds timeout);
  // True once every sequence has finished and every event has been read.
  bool done() const;

  // Engine side: queues the event, or hands it to the request's callback.
  void Push(TokenEvent event);

 private:
  const RequestId id_;
  const std::function<void(const TokenEvent&)> on_event_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  int unfinished_;
};

using RequestHandle = std::shared_ptr<RequestStream>;

}  // namespace gs
