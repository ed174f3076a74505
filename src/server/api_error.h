// OpenAI / vLLM error responses: an HTTP status and {"error": {"message", "type", "param",
// "code"}}, with the type names vLLM uses (BadRequestError for 400, NotFoundError for 404, ...).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gs::server {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "BadRequestError";
  std::string param;  // the request field at fault; empty -> null

  nlohmann::ordered_json ToJson() const;  // code = status, as vLLM writes it
};

ApiError BadRequest(std::string message, std::string param = "");
ApiError NotFound(std::string message, std::string param = "");
ApiError Unauthorized(std::string message);
ApiError PayloadTooLarge(std::string message);
ApiError TooManyRequests(std::string message);
ApiError Unavailable(std::string message);
ApiError InternalError(std::string message);
// 499 (nginx's "client closed request"): the reply nobody reads to a client that left.
ApiError ClientClosed();
// The error type vLLM/OpenAI name for a status.
const char* ErrorTypeForStatus(int status);

}  // namespace gs::server
