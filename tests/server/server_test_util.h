// Shared by the server tests: the demo model (written once per test process to a temp dir), an
// in-process gemmaserve server over it on a free loopback port, small HTTP helpers, a /metrics
// reader and the single-request oracle (gs::Generate on its own CPU runner, which knows nothing
// of the engine or the server).
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/cpu/cpu_runner.h"
#include "runtime/generate.h"
#include "server/model_server.h"
#include "tools/demo_model.h"

namespace gs::test {

using Json = nlohmann::json;

class DemoModelDir {
 public:
  static DemoModelDir& Get() {
    static DemoModelDir d;
    return d;
  }
  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const Gemma4Weights& weights() const { return weights_; }

  // Greedy single-request reference: gs::Generate, stopping at the config's eos ids unless
  // ignore_eos. Serialised (one oracle runner).
  std::vector<int32_t> Oracle(const std::vector<int32_t>& prompt, int max_tokens, bool ignore_eos) {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_tuple(prompt, max_tokens, ignore_eos);
    auto it = memo_.find(key);
    if (it != memo_.end()) return it->second;
    GenerateOptions o;
    o.max_tokens = max_tokens;
    if (!ignore_eos) o.stop_ids.assign(config_.eos_token_ids.begin(), config_.eos_token_ids.end());
    o.sampling.temperature = 0;
    auto r = Generate(*oracle_, prompt, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    std::vector<int32_t> out = r.ok() ? r->tokens : std::vector<int32_t>{};
    memo_[key] = out;
    return out;
  }

 private:
  DemoModelDir() {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("gs_server_test_" + std::to_string(::getpid()));
    path_ = dir.string();
    DemoModelOptions o;
    o.output_dir = path_;
    o.overwrite = true;
    auto st = WriteDemoModel(o);
    if (!st) ADD_FAILURE() << st.error().message;
    auto c = LoadModelConfig(path_);
    if (!c) ADD_FAILURE() << c.error().message;
    config_ = *c;
    auto w = LoadGemma4Weights(config_, path_);
    if (!w) ADD_FAILURE() << w.error().message;
    weights_ = *w;
    oracle_ = std::make_unique<CpuRunner>(config_, weights_, KvSpecForSingleSequence(2048),
                                          CpuRunnerOptions{1, 0.0f});
  }
  ~DemoModelDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  std::string path_;
  ModelConfig config_;
  Gemma4Weights weights_;
  std::unique_ptr<CpuRunner> oracle_;
  std::mutex mu_;
  std::map<std::tuple<std::vector<int32_t>, int, bool>, std::vector<int32_t>> memo_;
};

struct TestServerOptions {
  int max_num_seqs = 8;
  int kv_tokens = 8192;
  int max_num_batched_tokens = 512;
  int max_model_len = 0;
  int max_waiting_requests = 256;
  bool prefix_caching = true;
  int prefix_snapshots = 8;
  int http_threads = 0;
  size_t max_body_bytes = 1u << 20;
  std::string api_key;
  int tool_call_close_after_tokens = 0;
  // Wraps the CPU runner (test doubles such as the scripted runner of the client test).
  std::function<std::unique_ptr<ModelRunner>(std::unique_ptr<ModelRunner>)> wrap_runner;
};

// The server stack gemmaserve serve runs, in process, on 127.0.0.1 and a free port.
inline std::unique_ptr<server::ModelServer> StartServer(const TestServerOptions& t = {}) {
  DemoModelDir& demo = DemoModelDir::Get();
  server::ModelServerOptions o;
  o.model_dir = demo.path();
  o.served_model_names = {"demo"};
  o.engine.max_num_seqs = t.max_num_seqs;
  o.engine.max_num_batched_tokens = t.max_num_batched_tokens;
  o.engine.max_model_len = t.max_model_len;
  o.engine.max_waiting_requests = t.max_waiting_requests;
  o.engine.enable_prefix_caching = t.prefix_caching;
  o.http.host = "127.0.0.1";
  o.http.port = 0;
  o.http.api_key = t.api_key;
  o.http.threads = t.http_threads;
  o.http.max_body_bytes = t.max_body_bytes;
  o.limits.tool_call_close_after_tokens = t.tool_call_close_after_tokens;
  const KvCacheSpec spec = EngineKvSpec(o.engine, (t.kv_tokens + 15) / 16,
                                        t.prefix_caching ? t.prefix_snapshots : 0);
  std::unique_ptr<ModelRunner> runner =
      std::make_unique<CpuRunner>(demo.config(), demo.weights(), spec, CpuRunnerOptions{2, 0.0f});
  if (t.wrap_runner) runner = t.wrap_runner(std::move(runner));
  auto s = server::ModelServer::Create(std::move(runner), std::move(o));
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return nullptr;
  }
  auto port = (*s)->Start();
  if (!port) {
    ADD_FAILURE() << port.error().message;
    return nullptr;
  }
  return std::move(*s);
}

struct HttpReply {
  int status = 0;
  std::string body;
  Json json;  // parsed body (null if not JSON)
};

inline HttpReply ToReply(const httplib::Result& r) {
  HttpReply out;
  if (!r) {
    out.body = "transport error: " + httplib::to_string(r.error());
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  out.json = Json::parse(r->body, nullptr, false);
  if (out.json.is_discarded()) out.json = nullptr;
  return out;
}

inline HttpReply PostRaw(int port, const std::string& path, const std::string& body,
                         const httplib::Headers& headers = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  return ToReply(c.Post(path.c_str(), headers, body, "application/json"));
}

inline HttpReply PostJson(int port, const std::string& path, const Json& body,
                          const httplib::Headers& headers = {}) {
  return PostRaw(port, path, body.dump(), headers);
}

inline HttpReply Get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  return ToReply(c.Get(path.c_str()));
}

// The value of a Prometheus sample whose name (and labels, as written) starts with `prefix`;
// -1 when absent.
inline double MetricValue(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t eol = text.find('\n', pos);
      const std::string line = text.substr(pos, eol - pos);
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
    pos += prefix.size();
  }
  return -1;
}

inline double Metric(int port, const std::string& prefix) {
  return MetricValue(Get(port, "/metrics").body, prefix);
}

// Checks an OpenAI error reply: status, {"error": {"message", "type", "param", "code"}}.
inline void ExpectApiError(const HttpReply& r, int status, const std::string& type,
                           const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.body;
  ASSERT_TRUE(r.json.is_object() && r.json.contains("error")) << r.body;
  const Json& e = r.json["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_EQ(e["type"], type) << r.body;
  EXPECT_EQ(e["code"], status) << r.body;
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.body;
  }
  EXPECT_TRUE(e.contains("param")) << r.body;
}

}  // namespace gs::test
