#include "server/api_error.h"

namespace gs::server {

nlohmann::ordered_json ApiError::ToJson() const {
  nlohmann::ordered_json e = nlohmann::ordered_json::object();
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(param);
  e["code"] = status;
  return {{"error", e}};
}

const char* ErrorTypeForStatus(int status) {
  switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowed";
    case 413: return "RequestTooLargeError";
    case 429: return "RateLimitError";
    case 503: return "ServiceUnavailableError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

namespace {
ApiError Make(int status, std::string message, std::string param = "") {
  return ApiError{status, std::move(message), ErrorTypeForStatus(status), std::move(param)};
}
}  // namespace

ApiError BadRequest(std::string message, std::string param) {
  return Make(400, std::move(message), std::move(param));
}
ApiError NotFound(std::string message, std::string param) {
  return Make(404, std::move(message), std::move(param));
}
ApiError Unauthorized(std::string message) { return Make(401, std::move(message)); }
ApiError PayloadTooLarge(std::string message) { return Make(413, std::move(message)); }
ApiError TooManyRequests(std::string message) { return Make(429, std::move(message)); }
ApiError Unavailable(std::string message) { return Make(503, std::move(message)); }
ApiError InternalError(std::string message) { return Make(500, std::move(message)); }
ApiError ClientClosed() {
  return Make(499, "the client closed the connection before the answer was complete");
}

}  // namespace gs::server
