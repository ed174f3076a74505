#include "server/sse_client.h"

#include <httplib.h>

namespace gs::server {

bool SseParser::Feed(const char* data, size_t size,
                     const std::function<bool(const std::string&)>& on_data) {
  buffer_.append(data, size);
  size_t start = 0;
  for (;;) {
    const size_t end = buffer_.find("\n\n", start);
    if (end == std::string::npos) break;
    std::string payload;
    size_t line = start;
    while (line < end) {
      size_t eol = buffer_.find('\n', line);
      if (eol == std::string::npos || eol > end) eol = end;
      std::string_view l(buffer_.data() + line, eol - line);
      if (l.substr(0, 5) == "data:") {
        l.remove_prefix(5);
        if (!l.empty() && l.front() == ' ') l.remove_prefix(1);
        if (!payload.empty()) payload += '\n';
        payload.append(l);
      }
      line = eol + 1;
    }
    start = end + 2;
    if (!payload.empty() && !on_data(payload)) {
      buffer_.erase(0, start);
      return false;
    }
  }
  buffer_.erase(0, start);
  return true;
}

SseResult PostStream(const std::string& host, int port, const std::string& path,
                     const std::string& json_body, const std::string& api_key,
                     const std::function<bool(const std::string& data)>& on_data, int timeout_s) {
  SseResult result;
  httplib::Client client(host, port);
  client.set_read_timeout(timeout_s, 0);
  client.set_write_timeout(timeout_s, 0);
  client.set_connection_timeout(10, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = json_body;
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!api_key.empty()) req.set_header("Authorization", "Bearer " + api_key);
  bool is_stream = false;
  SseParser parser;
  req.response_handler = [&](const httplib::Response& res) {
    result.status = res.status;
    is_stream = res.get_header_value("Content-Type").rfind("text/event-stream", 0) == 0;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    if (!is_stream) {
      result.body.append(data, size);
      return true;
    }
    const bool go_on = parser.Feed(data, size, [&](const std::string& payload) {
      if (payload == "[DONE]") {
        result.completed = true;
        return true;
      }
      return on_data(payload);
    });
    if (!go_on) result.aborted = true;
    return go_on;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool ok = client.send(req, res, error);
  if (!ok && !result.aborted) result.error = httplib::to_string(error);
  if (result.status == 0) result.status = res.status;
  return result;
}

}  // namespace gs::server
