// A non-streaming request whose client leaves before the answer is cancelled and its KV freed
// (as streaming requests already are), and the server keeps answering. The client is a raw
// socket: it sends one request with a long generation ahead of it, waits until /metrics shows the
// sequence running, and closes the connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "server/client_socket.h"
#include "server_test_util.h"

namespace gs::test {
namespace {

using namespace std::chrono_literals;

// Connects to 127.0.0.1:port and writes one HTTP/1.1 POST; returns the socket (or -1).
int SendRawPost(int port, const std::string& path, const std::string& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// Polls /metrics until `pred(metrics text)` holds or `timeout` passes.
template <typename Pred>
bool WaitForMetrics(int port, std::chrono::milliseconds timeout, Pred pred) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred(Get(port, "/metrics").body)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

void LeaveMidAnswer(const std::string& path, const Json& body) {
  TestServerOptions t;
  t.prefix_caching = false;  // finished blocks then return to the pool, not the prefix cache
  auto server = StartServer(t);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const int fd = SendRawPost(port, path, body.dump());
  ASSERT_GE(fd, 0) << "cannot connect to the test server";
  // The request is generating when a sequence runs and holds KV blocks.
  const bool running = WaitForMetrics(port, 20s, [](const std::string& m) {
    return MetricValue(m, "vllm:num_requests_running") == 1 &&
           MetricValue(m, "gemmaserve:kv_blocks_used") > 0;
  });
  ASSERT_TRUE(running) << Get(port, "/metrics").body;
  EXPECT_EQ(Metric(port, "gemmaserve:request_disconnects_total"), 0);
  close(fd);
  const auto left = std::chrono::steady_clock::now();
  // The long generation (3500 tokens, tens of seconds here) cannot finish in this time; only a
  // cancel ends it.
  const bool freed = WaitForMetrics(port, 3s, [](const std::string& m) {
    return MetricValue(m, "vllm:num_requests_running") == 0 &&
           MetricValue(m, "gemmaserve:kv_blocks_used") == 0;
  });
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - left).count();
  ASSERT_TRUE(freed) << "request still running 3 s after its client left:\n"
                     << Get(port, "/metrics").body;
  std::printf("%s: KV freed %.3f s after the client closed\n", path.c_str(), secs);
  EXPECT_TRUE(WaitForMetrics(port, 2s, [](const std::string& m) {
    return MetricValue(m, "gemmaserve:request_disconnects_total") == 1 &&
           MetricValue(m, "vllm:request_success_total{model_name=\"demo\","
                          "finished_reason=\"abort\"}") == 1;
  })) << Get(port, "/metrics").body;
  // Still serving: a short request completes normally.
  Json small = body;
  small["max_tokens"] = 3;
  const HttpReply r = PostJson(port, path, small);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["usage"]["completion_tokens"], 3) << r.body;
}

TEST(ServerDisconnect, NonStreamingCompletionIsCancelledWhenTheClientLeaves) {
  LeaveMidAnswer("/v1/completions", {{"model", "demo"},
                                     {"prompt", std::vector<int32_t>{5, 6, 7, 8, 9}},
                                     {"max_tokens", 3500},
                                     {"ignore_eos", true},
                                     {"temperature", 0}});
}

TEST(ServerDisconnect, NonStreamingChatIsCancelledWhenTheClientLeaves) {
  LeaveMidAnswer("/v1/chat/completions",
                 {{"model", "demo"},
                  {"messages", Json::array({{{"role", "user"}, {"content", "hello there"}}})},
                  {"max_tokens", 3500},
                  {"ignore_eos", true},
                  {"temperature", 0}});
}

// The peer check itself on a socket pair: open, then pipelined data (not a close), then closed.
TEST(ServerDisconnect, SocketPeerClosedSeesOnlyARealClose) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  EXPECT_FALSE(server::SocketPeerClosed(sv[0]));
  ASSERT_EQ(write(sv[1], "G", 1), 1);
  EXPECT_FALSE(server::SocketPeerClosed(sv[0]));
  close(sv[1]);
  char c;
  ASSERT_EQ(read(sv[0], &c, 1), 1);
  EXPECT_TRUE(server::SocketPeerClosed(sv[0]));
  close(sv[0]);
}

}  // namespace
}  // namespace gs::test
