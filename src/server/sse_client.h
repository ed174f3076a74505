// Client side of an SSE response (bench-serve and the tests): POSTs JSON and hands each
// `data:` payload to a callback as it arrives. The callback returning false drops the connection
// mid-stream, which is how a client "disconnects".
#pragma once

#include <functional>
#include <string>

#include "util/status.h"

namespace gs::server {

struct SseResult {
  int status = 0;       // HTTP status (0: no response)
  std::string body;     // the body when the response was not an event stream (errors)
  bool completed = false;  // saw `data: [DONE]`
  bool aborted = false;    // the callback stopped it
  std::string error;       // transport error text
};

// Splits an SSE byte stream into `data:` payloads (comments and other fields skipped).
class SseParser {
 public:
  // Calls on_data for each complete event's data; returns false as soon as on_data does.
  bool Feed(const char* data, size_t size, const std::function<bool(const std::string&)>& on_data);

 private:
  std::string buffer_;
};

SseResult PostStream(const std::string& host, int port, const std::string& path,
                     const std::string& json_body, const std::string& api_key,
                     const std::function<bool(const std::string& data)>& on_data,
                     int timeout_s = 600);

}  // namespace gs::server
