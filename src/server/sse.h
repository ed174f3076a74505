// Server-sent events as OpenAI and vLLM stream them: one `data: {json}` event per chunk, a final
// `data: [DONE]`, and comment lines (ignored by clients) as keep-alive probes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gs::server {

// "data: <json>\n\n". Invalid UTF-8 in strings is replaced (U+FFFD), never an exception.
std::string SseData(const nlohmann::ordered_json& chunk);
// "data: [DONE]\n\n"
std::string SseDone();
// ": <text>\n\n" — a comment line; writing it tells whether the client is still connected.
std::string SseComment(const std::string& text);

// JSON text of a response body with the same UTF-8 safety.
std::string DumpJson(const nlohmann::ordered_json& value);

}  // namespace gs::server
