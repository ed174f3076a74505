// /metrics in the Prometheus text format with vLLM's metric names (prefix `vllm:`, label
// model_name), so dashboards and `vllm bench` scrapers built for vLLM read gemmaserve the same
// way; plus a few `gemmaserve:` extras (KV blocks, snapshots, HTTP outcomes).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "engine/metrics.h"

namespace gs::server {

// What the HTTP layer counts itself.
struct HttpStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> client_errors{0};   // 4xx
  std::atomic<uint64_t> rejected{0};        // 429 / 503
  std::atomic<uint64_t> disconnects{0};     // streams the client left
  std::atomic<uint64_t> request_disconnects{0};  // non-streaming requests the client left
  std::atomic<int64_t> active_streams{0};
};

std::string FormatPrometheus(const EngineMetrics& m, const HttpStats& http,
                             const std::string& model_name);

}  // namespace gs::server
