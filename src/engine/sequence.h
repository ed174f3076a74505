// The engine thread's state of a request and of each of its n sequences.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/request.h"
#include "engine/stop_checker.h"
#include "runtime/sampling.h"

namespace gs {

using Clock = std::chrono::steady_clock;

struct RequestState;

enum class SeqStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  Sequence(RequestState* owner, int idx, std::vector<int32_t> prompt, const SamplingParams& params,
           StopChecker stop_checker)
      : request(owner),
        index(idx),
        tokens(std::move(prompt)),
        num_prompt(static_cast<int>(tokens.size())),
        sampler(params, tokens),
        stop(std::move(stop_checker)) {}

  int num_output() const { return static_cast<int>(tokens.size()) - num_prompt; }
  int length() const { return static_cast<int>(tokens.size()); }

  RequestState* request;
  int index;
  std::vector<int32_t> tokens;  // the prompt, then generated tokens
  int num_prompt = 0;
  int num_computed = 0;  // leading tokens whose KV is in the cache (0 again after preemption)
  std::vector<int32_t> blocks;  // global-layer block table
  int slot = -1;
  SeqStatus status = SeqStatus::kWaiting;
  // For each leading full block offered to the prefix cache: the cached block holding its content
  // (its own block, or an equal one cached before; -1 if not cached).
  std::vector<int32_t> cached_blocks;
  std::vector<uint64_t> block_hashes;  // chain hashes of full token blocks, grown lazily
  std::vector<std::string> block_extras;  // their extra keys (BlockExtraKey)
  bool started = false;
  int num_cached_prompt_tokens = 0;  // the prefix hit at first admission

  Sampler sampler;  // keeps its generator and penalty counts across preemptions
  StopChecker stop;
  std::unique_ptr<TokenConstraint> constraint;  // guided decoding; null = none
  Clock::time_point last_token_time;
};

struct RequestState {
  RequestId id = 0;
  Request request;
  RequestHandle stream;
  std::vector<std::unique_ptr<Sequence>> sequences;
  int unfinished = 0;
  // Soft-token embeddings per request.images entry, encoded when first needed and dropped once
  // every sequence has prefilled past the image (empty = not encoded now).
  std::vector<std::vector<float>> image_embeddings;
  bool started = false;
  bool got_first_token = false;
  Clock::time_point arrival;
};

}  // namespace gs
