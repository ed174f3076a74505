// The client of `gemmaserve bench-serve` (what `vllm bench serve` does): random prompts of an
// exact token length (random text tokenized by the server's /tokenize, cut to length and sent as
// token ids), streamed /v1/completions with a fixed output length, sent at a Poisson request rate
// (or all at once) under a concurrency cap; per request TTFT, inter-token latencies and E2E latency;
// a report with throughput and mean / median / p99 of TTFT, TPOT, ITL and E2EL.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "util/status.h"

namespace gs::server {

struct BenchOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model;       // empty: the first model of /v1/models
  std::string api_key;
  int num_prompts = 100;
  int input_len = 1024;
  int output_len = 128;
  int max_concurrency = 0;  // 0 = no cap
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf = all at once
  bool ignore_eos = false;
  uint64_t seed = 0;
  int timeout_s = 600;
};

struct BenchRequestResult {
  bool ok = false;
  std::string error;
  int prompt_tokens = 0;
  int output_tokens = 0;
  double ttft = 0, e2el = 0;  // seconds
  std::vector<double> itl;    // seconds between chunks after the first
};

struct LatencyStats {
  double mean = 0, median = 0, p99 = 0;  // milliseconds
};

struct BenchReport {
  int num_prompts = 0, completed = 0, failed = 0;
  double duration_s = 0;
  int64_t total_input = 0, total_output = 0;
  double request_throughput = 0, output_throughput = 0, total_throughput = 0;
  int max_concurrency = 0;
  double request_rate = 0;
  LatencyStats ttft, tpot, itl, e2el;
  std::vector<std::string> errors;  // the first few

  std::string Table() const;  // the report as `vllm bench serve` prints it
};

// Mean / median / 99th percentile (linear interpolation, as numpy) in milliseconds.
LatencyStats Summarize(std::vector<double> seconds);

Expected<BenchReport> RunServingBenchmark(const BenchOptions& options);

}  // namespace gs::server
