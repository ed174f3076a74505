// The HTTP front: routes, request limits, API-key check and lifecycle, over cpp-httplib's
// threaded server. Generation requests are handed to the chat / completion services; a streamed
// response is pumped from its StreamSession by httplib's chunked content provider, and a failed
// write (the client left) cancels the generation so its KV is freed at the next engine step.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /ping, GET /version, GET /metrics, POST /tokenize, POST /detokenize. With an API key, the
// /v1/* routes need `Authorization: Bearer <key>` (as vLLM: the others stay open).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "server/metrics.h"
#include "server/serving_context.h"
#include "util/status.h"

namespace httplib {
class Server;
}

namespace gs::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 = any free port (tests)
  std::string api_key;
  size_t max_body_bytes = 32u << 20;  // larger bodies get 413
  size_t max_json_depth = 64;         // deeper nesting gets 400 (recursion in JSON consumers)
  int threads = 0;                    // HTTP worker threads; 0 = 2 * max_num_seqs + 64
  int keep_alive_timeout_s = 2;       // idle keep-alive connections hold a worker this long
};

class HttpServer {
 public:
  // `ctx.engine` and the rest must outlive the server.
  HttpServer(ServingContext ctx, HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  Expected<int> Bind();
  // Serves on a background thread until Stop(). Bind() first.
  Status Start();
  // New generation requests get 503 from now on; running ones continue (graceful drain).
  void BeginDrain() { draining_ = true; }
  // Closes the listener and waits for the worker threads (streams end when their requests do).
  void Stop();

  int port() const { return port_; }
  const std::string& host() const { return options_.host; }
  HttpStats& stats() { return stats_; }
  const ServingContext& context() const { return ctx_; }

 private:
  void Routes();

  ServingContext ctx_;
  HttpServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<class ChatService> chat_;
  std::unique_ptr<class CompletionService> completion_;
  std::unique_ptr<class TokenizeService> tokenize_;
  HttpStats stats_;
  std::atomic<bool> draining_{false};
  int port_ = -1;
  std::thread thread_;
};

// Deepest nesting of arrays/objects in JSON text (strings skipped); used to refuse bodies whose
// nesting would make recursive JSON consumers overflow the stack.
size_t JsonNestingDepth(const std::string& text);

}  // namespace gs::server
