// `serve --device cuda` below the CLI: the CUDA runner sized from --gpu-memory-utilization
// (runtime/cuda/serving_runner.h) and the whole server stack on it. The memory check's oracle is
// cudaMemGetInfo: after the largest steps have run (CUDA graphs included) the process holds no
// more than utilization x total, and the KV pool took most of what that allowed. The serving
// checks run the OpenAI API on the demo model with the CUDA runner: concurrent greedy requests
// produce exactly max_tokens tokens inside the vocabulary, tool_choice "required" yields a
// well-formed call of a declared tool, a client that leaves a non-streaming request frees its
// KV, and every KV block is returned at the end. Skips loudly without a GPU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "gpu_test_util.h"
#include "runtime/cuda/gpu_memory.h"
#include "runtime/cuda/serving_runner.h"
#include "server/server_test_util.h"
#include "vision/encode_groups.h"

namespace gs {
namespace {

using test::DemoModelDir;
using test::Json;

constexpr int kMaxNumSeqs = 8;

KvCacheSpec Slots() {
  EngineConfig ec;
  ec.max_num_seqs = kMaxNumSeqs;
  return EngineKvSpec(ec, 0, /*prefix_snapshots=*/8);
}

// configs/gemma-4-26B-A4B-it: in the source tree, or next to a carried binary
// (.device/cuda/tests/ -> .device/cuda/configs/).
std::string RealConfigDir() {
  const std::string rel = "configs/gemma-4-26B-A4B-it";
  const std::string src = std::string(GS_SOURCE_DIR) + "/" + rel;
  if (std::filesystem::exists(src + "/config.json")) return src;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (exe.parent_path().parent_path() / rel).string();
}

// The real 26B-A4B shapes with random weights (as serve --load-format dummy), half the GPU: the
// largest prefill, decode steps of every bucket and the largest vision encoder pass all fit.
TEST(ServeCuda, GpuMemoryUtilizationBoundsTheProcess) {
  GS_REQUIRE_GPU();
  auto config = LoadModelConfig(RealConfigDir());
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto before = QueryGpuMemory();
  GS_ASSERT_OK(before);
  CudaServingOptions o;
  o.gpu_memory_utilization = 0.5;
  o.max_num_seqs = kMaxNumSeqs;
  o.max_num_batched_tokens = 512;
  std::string report;
  auto runner = CreateServingCudaRunner(*config, nullptr, Slots(), o, &report);
  std::printf("%s", report.c_str());
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  EXPECT_NE(report.find("KV capacity:"), std::string::npos) << report;
  // The largest prefill, then decode steps of every bucket up to max_num_seqs (graph captures).
  const int block = (*runner)->kv_spec().block_size;
  Batch prefill;
  prefill.token_ids.assign(512, 5);
  prefill.sequences.push_back({0, 0, 512, 0, {}});
  for (int b = 0; b * block < 512; ++b) prefill.sequences[0].block_table.push_back(b);
  prefill.logits_indices = {511};
  std::vector<float> logits;
  GS_ASSERT_OK((*runner)->Forward(prefill, &logits));
  for (int step = 0; step < 4; ++step) {
    for (int n = 1; n <= kMaxNumSeqs; n *= 2) {
      Batch d;
      for (int i = 0; i < n; ++i) {
        d.token_ids.push_back(7);
        d.sequences.push_back({i + 1, i, 1, step, {100 + i}});
        d.logits_indices.push_back(i);
      }
      GS_ASSERT_OK((*runner)->Forward(d, &logits));
    }
  }
  // The engine's largest vision encoder pass (8 images x 2520 patches) after all of that: the
  // probe measured its scratch, so it fits inside the budget too.
  ASSERT_TRUE((*runner)->supports_vision());
  EXPECT_NE(report.find("Vision encoder scratch"), std::string::npos) << report;
  const std::vector<ProcessedImage> pass = WorstCaseEncodePass(*config->vision);
  std::vector<const ProcessedImage*> images;
  for (const ProcessedImage& img : pass) images.push_back(&img);
  auto soft = (*runner)->EncodeImages(images);
  ASSERT_TRUE(soft.ok()) << soft.error().message;
  EXPECT_EQ(soft->size(), pass.size());
  auto after = QueryGpuMemory();
  GS_ASSERT_OK(after);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double used = static_cast<double>(after->total_bytes - after->free_bytes) / gib;
  const double allowed = 0.5 * static_cast<double>(after->total_bytes) / gib;
  std::printf("GPU memory in use %.2f GiB; --gpu-memory-utilization 0.5 allows %.2f GiB\n", used,
              allowed);
  EXPECT_LE(used, allowed);
  // Not needlessly timid: no more than the reserve and 0.5 GiB of rounding left unused (the pool
  // is far below its cap of every slot at full length here).
  EXPECT_EQ(report.find("capped"), std::string::npos) << report;
  EXPECT_GE(used, allowed - static_cast<double>(kCudaServingReserveBytes) / gib - 0.5);
}

// A raw non-streaming POST whose client then closes the socket.
int SendAndKeepOpen(int port, const std::string& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return -1;
  return fd;
}

TEST(ServeCuda, OpenAiServerOnTheCudaRunner) {
  GS_REQUIRE_GPU();
  DemoModelDir& demo = DemoModelDir::Get();
  CudaServingOptions co;
  co.kv_cache_tokens = 16384;
  co.max_num_seqs = kMaxNumSeqs;
  std::string report;
  auto runner = CreateServingCudaRunner(demo.config(), &demo.weights(), Slots(), co, &report);
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  server::ModelServerOptions o;
  o.model_dir = demo.path();
  o.served_model_names = {"demo"};
  o.engine.max_num_seqs = kMaxNumSeqs;
  o.engine.max_num_batched_tokens = 512;
  o.http.host = "127.0.0.1";
  o.http.port = 0;
  o.limits.tool_call_close_after_tokens = 32;
  auto s = server::ModelServer::Create(std::move(*runner), std::move(o));
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto port_or = (*s)->Start();
  GS_ASSERT_OK(port_or);
  const int port = *port_or;

  // Concurrent greedy completions: each exactly max_tokens ids inside the vocabulary.
  std::vector<std::thread> clients;
  std::vector<test::HttpReply> replies(12);
  for (int i = 0; i < 12; ++i) {
    clients.emplace_back([&, i] {
      Json body = {{"model", "demo"},       {"prompt", std::vector<int32_t>{2, 10 + i, 20, 30 + i}},
                   {"max_tokens", 16},      {"temperature", 0},
                   {"ignore_eos", true},    {"return_token_ids", true}};
      replies[static_cast<size_t>(i)] = test::PostJson(port, "/v1/completions", body);
    });
  }
  for (auto& t : clients) t.join();
  for (const test::HttpReply& r : replies) {
    ASSERT_EQ(r.status, 200) << r.body;
    const Json& c = r.json["choices"][0];
    EXPECT_EQ(c["finish_reason"], "length");
    ASSERT_EQ(c["token_ids"].size(), 16u) << r.body;
    for (const Json& id : c["token_ids"]) {
      EXPECT_GE(id.get<int>(), 0);
      EXPECT_LT(id.get<int>(), demo.config().vocab_size);
    }
  }

  // tool_choice "required" on the random model: a well-formed call of a declared tool.
  Json chat = {{"model", "demo"},
               {"messages", Json::array({{{"role", "user"}, {"content", "weather?"}}})},
               {"tools", Json::parse(R"([{"type":"function","function":{"name":"get_weather"}},
                                         {"type":"function","function":{"name":"get_time"}}])")},
               {"tool_choice", "required"},
               {"temperature", 0},
               {"max_tokens", 120}};
  const test::HttpReply tc = test::PostJson(port, "/v1/chat/completions", chat);
  ASSERT_EQ(tc.status, 200) << tc.body;
  const Json& msg = tc.json["choices"][0]["message"];
  ASSERT_TRUE(msg.contains("tool_calls")) << tc.body;
  const std::string name = msg["tool_calls"][0]["function"]["name"];
  EXPECT_TRUE(name == "get_weather" || name == "get_time") << name;
  const Json args = Json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>(),
                                nullptr, false);
  EXPECT_TRUE(args.is_object()) << tc.body;

  // A client that leaves a long non-streaming request frees its KV at once.
  const int fd = SendAndKeepOpen(port, Json({{"prompt", std::vector<int32_t>{2, 3, 4}},
                                             {"max_tokens", 4000},
                                             {"ignore_eos", true}}).dump());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 500 && test::Metric(port, "vllm:num_requests_running") != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(test::Metric(port, "vllm:num_requests_running"), 1);
  close(fd);
  bool freed = false;
  for (int i = 0; i < 300 && !freed; ++i) {
    freed = test::Metric(port, "vllm:num_requests_running") == 0 &&
            test::Metric(port, "gemmaserve:kv_blocks_used") == 0;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(freed) << test::Get(port, "/metrics").body;
  EXPECT_EQ(test::Metric(port, "gemmaserve:request_disconnects_total"), 1);
  (*s)->Shutdown(5);
}

}  // namespace
}  // namespace gs
