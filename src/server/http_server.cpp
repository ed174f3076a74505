#include "server/http_server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>

#include "server/chat_service.h"
#include "server/client_socket.h"
#include "server/completion_service.h"
#include "server/response_format.h"
#include "server/sse.h"
#include "server/tokenize_service.h"
#include "util/str.h"

namespace gs::server {

// httplib listens with a backlog of 5: a burst of simultaneous connects overflows the accept
// queue and the excess clients see their connection reset. Calling listen() again on the bound
// socket raises the backlog (Linux allows that), which needs the protected socket.
class ListeningServer : public httplib::Server {
 public:
  void RaiseBacklog() { ::listen(svr_sock_, SOMAXCONN); }
};

namespace {

constexpr const char* kVersion = "0.1.0";

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(DumpJson(body), "application/json");
}

void SendError(httplib::Response& res, const ApiError& e) { SendJson(res, e.status, e.ToJson()); }

}  // namespace

size_t JsonNestingDepth(const std::string& text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

HttpServer::HttpServer(ServingContext ctx, HttpServerOptions options)
    : ctx_(std::move(ctx)), options_(std::move(options)), http_(std::make_unique<ListeningServer>()) {
  chat_ = std::make_unique<ChatService>(ctx_);
  completion_ = std::make_unique<CompletionService>(ctx_);
  tokenize_ = std::make_unique<TokenizeService>(ctx_, *chat_);
  int threads = options_.threads;
  if (threads <= 0) threads = 2 * ctx_.engine->info().max_num_seqs + 64;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_keep_alive_timeout(options_.keep_alive_timeout_s);
  Routes();
}

HttpServer::~HttpServer() { Stop(); }

Expected<int> HttpServer::Bind() {
  // A client that vanishes mid-write must not kill the process: httplib sends without
  // MSG_NOSIGNAL, so a broken pipe would raise SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
  } else {
    port_ = http_->bind_to_port(options_.host, options_.port) ? options_.port : -1;
  }
  if (port_ >= 0) static_cast<ListeningServer*>(http_.get())->RaiseBacklog();
  if (port_ < 0) {
    return MakeError("cannot listen on ", options_.host, ":", options_.port,
                     " (address in use, or not a local address?)");
  }
  return port_;
}

Status HttpServer::Start() {
  if (port_ < 0) return MakeError("HttpServer::Start before a successful Bind");
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return Ok();
}

void HttpServer::Stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Routes() {
  httplib::Server& s = *http_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    ++stats_.requests;
    if (!options_.api_key.empty() && StartsWith(req.path, "/v1")) {
      const std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + options_.api_key) {
        SendError(res, Unauthorized("invalid or missing API key (Authorization: Bearer <key>)"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Bodies for the statuses httplib produces itself (404 route, 413 body too large, 400 bad
  // framing); our own error replies already have one.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                 httplib::Response& res) {
    if (res.status >= 400 && res.status < 500) ++stats_.client_errors;
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 404: message = StrCat("no route for ", req.method, " ", req.path); break;
      case 413:
        message = StrCat("request body exceeds the limit of ", options_.max_body_bytes, " bytes");
        break;
      default: message = StrCat("HTTP ", res.status, " for ", req.method, " ", req.path);
    }
    ApiError e{res.status, message, ErrorTypeForStatus(res.status), ""};
    SendError(res, e);
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                             std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SendError(res, InternalError(StrCat("internal error: ", what)));
  });

  // Parses the body and runs `handle` on it; errors and replies are written here.
  auto json_route = [this](std::function<Reply(const Json&, const ClientGone&)> handle,
                           bool generates) {
    return [this, handle = std::move(handle), generates](const httplib::Request& req,
                                                          httplib::Response& res) {
      if (generates && draining_) {
        ++stats_.rejected;
        SendError(res, Unavailable("the server is shutting down"));
        return;
      }
      if (JsonNestingDepth(req.body) > options_.max_json_depth) {
        SendError(res, BadRequest(StrCat("the JSON body nests deeper than ",
                                         options_.max_json_depth, " levels")));
        return;
      }
      Json body;
      try {
        body = Json::parse(req.body);
      } catch (const std::exception& e) {
        SendError(res, BadRequest(StrCat("invalid JSON body: ", e.what())));
        return;
      }
      ClientSocket client(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
      Reply reply = handle(body, [&client] { return client.PeerClosed(); });
      if (reply.status == 429 || reply.status == 503) ++stats_.rejected;
      if (reply.status == 499) ++stats_.request_disconnects;
      if (!reply.stream) {
        SendJson(res, reply.status, reply.body);
        return;
      }
      std::shared_ptr<StreamSession> session = std::move(reply.stream);
      ++stats_.active_streams;
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, session](size_t, httplib::DataSink& sink) {
            bool client_ok = true;
            const bool more = session->Pump([&](const std::string& data) {
              client_ok = client_ok && sink.write(data.data(), data.size());
              return client_ok;
            });
            if (!client_ok) {
              session->Abort();
              ++stats_.disconnects;
              return false;
            }
            if (!more) sink.done();
            return true;
          },
          [this, session](bool success) {
            if (!success) session->Abort();
            --stats_.active_streams;
          });
    };
  };

  s.Post("/v1/chat/completions",
         json_route([this](const Json& b, const ClientGone& g) { return chat_->Handle(b, g); },
                    true));
  s.Post("/v1/completions", json_route([this](const Json& b, const ClientGone& g) {
           return completion_->Handle(b, g);
         }, true));
  s.Post("/tokenize", json_route([this](const Json& b, const ClientGone&) {
           return tokenize_->Tokenize(b);
         }, false));
  s.Post("/detokenize", json_route([this](const Json& b, const ClientGone&) {
           return tokenize_->Detokenize(b);
         }, false));

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = draining_ ? 503 : 200;
  });
  s.Get("/ping", [this](const httplib::Request&, httplib::Response& res) {
    res.status = draining_ ? 503 : 200;
  });
  s.Get("/version", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, Json{{"version", kVersion}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const std::string model = ctx_.limits.served_model_names.empty()
                                  ? "" : ctx_.limits.served_model_names.front();
    res.set_content(FormatPrometheus(ctx_.engine->Metrics(), stats_, model),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    Json data = Json::array();
    const int64_t created = UnixSeconds();
    for (const std::string& name : ctx_.limits.served_model_names) {
      Json m = Json::object();
      m["id"] = name;
      m["object"] = "model";
      m["created"] = created;
      m["owned_by"] = "gemmaserve";
      m["root"] = ctx_.model_root;
      m["parent"] = nullptr;
      m["max_model_len"] = ctx_.limits.max_model_len;
      m["permission"] = Json::array();
      data.push_back(std::move(m));
    }
    SendJson(res, 200, Json{{"object", "list"}, {"data", std::move(data)}});
  });
}

}  // namespace gs::server
