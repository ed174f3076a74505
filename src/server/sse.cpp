#include "server/sse.h"

namespace gs::server {

std::string DumpJson(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string SseData(const nlohmann::ordered_json& chunk) {
  return "data: " + DumpJson(chunk) + "\n\n";
}

std::string SseDone() { return "data: [DONE]\n\n"; }

std::string SseComment(const std::string& text) { return ": " + text + "\n\n"; }

}  // namespace gs::server
