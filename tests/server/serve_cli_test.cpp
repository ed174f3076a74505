// `gemmaserve serve` as a subprocess on loopback: startup lines, SIGTERM with a request in flight
// (the stream ends properly and the process exits 0), --api-key, and the clear refusals
// (--device cuda without a GPU, --kv-cache-dtype fp8 on CPU, a --quantization that does not match).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "server/sse_client.h"
#include "server_test_util.h"

namespace gs::test {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ServeProcess {
 public:
  explicit ServeProcess(std::vector<std::string> args) {
    log_ = std::filesystem::temp_directory_path() /
           ("gs_serve_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++) + ".log");
    // Everything the child needs is built before fork (no allocation after it).
    std::string bin = GS_BINARY;
    std::vector<char*> argv;
    argv.push_back(bin.data());
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log_path = log_.string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove(log_, ec);
  }
  // Waits for the "serving ... on http://" line (true) or the process's exit (false).
  bool WaitServing(int timeout_s = 60) {
    for (int i = 0; i < timeout_s * 20; ++i) {
      if (log().find(" on http://") != std::string::npos) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_status_ = status;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Waits for exit; returns the exit code (-1: still running or killed by a signal).
  int WaitExit(int timeout_s = 60) {
    for (int i = 0; i < timeout_s * 20 && !exited_; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_status_ = status;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!exited_ || !WIFEXITED(exit_status_)) return -1;
    return WEXITSTATUS(exit_status_);
  }
  void Signal(int sig) { ::kill(pid_, sig); }
  std::string log() const { return ReadFile(log_.string()); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
};

std::vector<std::string> ServeArgs(int port, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"serve", DemoModelDir::Get().path(), "--port", std::to_string(port),
                                "--threads", "2", "--served-model-name", "demo"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(ServeCli, StartupLinesAndSigtermWithARequestInFlightExitsZero) {
  const int port = FreePort();
  ServeProcess p(ServeArgs(port, {"--drain-timeout", "1"}));
  ASSERT_TRUE(p.WaitServing()) << p.log();
  const std::string log = p.log();
  EXPECT_NE(log.find("KV cache: "), std::string::npos) << log;
  EXPECT_NE(log.find("tokens of global-layer KV"), std::string::npos) << log;
  EXPECT_NE(log.find("sequences at once"), std::string::npos) << log;
  EXPECT_NE(log.find("loaded in"), std::string::npos) << log;
  EXPECT_NE(log.find("http://127.0.0.1:" + std::to_string(port)), std::string::npos) << log;
  EXPECT_EQ(Get(port, "/v1/models").json["data"][0]["id"], "demo");

  // A long stream in flight when SIGTERM arrives: it is drained for 1 s, then cancelled, and
  // still ends with a finish reason and [DONE].
  std::atomic<int> chunks{0};
  std::string last_finish;
  server::SseResult result;
  std::thread client([&] {
    Json body = {{"prompt", "hello"}, {"max_tokens", 3000}, {"ignore_eos", true}, {"stream", true}};
    result = server::PostStream("127.0.0.1", port, "/v1/completions", body.dump(), "",
                                [&](const std::string& data) {
                                  ++chunks;
                                  Json c = Json::parse(data, nullptr, false);
                                  if (c.is_object() && !c["choices"].empty() &&
                                      !c["choices"][0]["finish_reason"].is_null()) {
                                    last_finish = c["choices"][0]["finish_reason"];
                                  }
                                  return true;
                                });
  });
  while (chunks.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  p.Signal(SIGTERM);
  client.join();
  EXPECT_EQ(p.WaitExit(), 0) << p.log();
  EXPECT_TRUE(result.completed) << "stream did not end with [DONE]: " << result.error;
  EXPECT_EQ(last_finish, "abort");
  EXPECT_NE(p.log().find("SIGTERM received"), std::string::npos) << p.log();
}

TEST(ServeCli, SigintWhenIdleExitsZero) {
  const int port = FreePort();
  ServeProcess p(ServeArgs(port));
  ASSERT_TRUE(p.WaitServing()) << p.log();
  const HttpReply r = PostJson(port, "/v1/completions", {{"prompt", "hi"}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 200) << r.body;
  p.Signal(SIGINT);
  EXPECT_EQ(p.WaitExit(), 0) << p.log();
}

TEST(ServeCli, ApiKey) {
  const int port = FreePort();
  ServeProcess p(ServeArgs(port, {"--api-key", "k123"}));
  ASSERT_TRUE(p.WaitServing()) << p.log();
  const Json body = {{"model", "demo"}, {"prompt", "hi"}, {"max_tokens", 2}};
  ExpectApiError(PostJson(port, "/v1/completions", body), 401, "AuthenticationError");
  EXPECT_EQ(PostJson(port, "/v1/completions", body, {{"Authorization", "Bearer k123"}}).status, 200);
  p.Signal(SIGTERM);
  EXPECT_EQ(p.WaitExit(), 0);
}

TEST(ServeCli, ClearRefusals) {
  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--device", "cuda"}, "--device cuda"},
      {{"--kv-cache-dtype", "fp8"}, "fp8"},
      {{"--quantization", "compressed-tensors"}, "is modelopt"},
      {{"--max-model-len", "100000"}, "max_model_len"},
      {{"--load-format", "dummy"}, "random weights exist for --device cuda only"},
#if !GS_HAVE_CUDA
      {{"--device", "cuda", "--kv-cache-dtype", "fp8"}, "built without CUDA"},
#endif
  };
  for (const Case& c : cases) {
    ServeProcess p(ServeArgs(FreePort(), c.extra));
    EXPECT_FALSE(p.WaitServing()) << c.extra[0];
    EXPECT_EQ(p.WaitExit(), 1) << c.extra[0];
    EXPECT_NE(p.log().find(c.message), std::string::npos) << c.extra[0] << ": " << p.log();
  }
  // The positional model and --model together must agree.
  ServeProcess both({"serve", DemoModelDir::Get().path(), "--model", "/elsewhere"});
  EXPECT_EQ(both.WaitExit(), 1);
  EXPECT_NE(both.log().find("two different models"), std::string::npos) << both.log();
}

}  // namespace
}  // namespace gs::test
