// `gemmaserve bench-serve` against the in-process server on the demo model with tiny lengths:
// every request succeeds, token totals are exact (ignore_eos), the table has vLLM's sections;
// and the percentile helper agrees with numpy's linear interpolation on known data.
#include <cstdio>
#include <regex>

#include "server/bench_client.h"
#include "server_test_util.h"

namespace gs::test {
namespace {

std::string RunCommand(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  *status = ::pclose(f);
  return out;
}

double Field(const std::string& table, const std::string& label) {
  const size_t at = table.find(label);
  if (at == std::string::npos) return -1;
  return std::stod(table.substr(at + label.size()));
}

TEST(BenchServe, ReportsExactTotalsAgainstTheDemoServer) {
  TestServerOptions o;
  o.max_num_seqs = 4;
  auto server = StartServer(o);
  ASSERT_TRUE(server);
  const std::string cmd = StrCat(GS_BINARY, " bench-serve --port ", server->http().port(),
                                 " --random-input-len 16 --random-output-len 8 --num-prompts 12",
                                 " --max-concurrency 4 --request-rate 100 --ignore-eos --seed 3",
                                 " 2>&1");
  int status = -1;
  const std::string out = RunCommand(cmd, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(Field(out, "Successful requests:"), 12) << out;
  EXPECT_EQ(Field(out, "Failed requests:"), 0) << out;
  EXPECT_EQ(Field(out, "Total input tokens:"), 12 * 16) << out;
  EXPECT_EQ(Field(out, "Total generated tokens:"), 12 * 8) << out;
  for (const char* label : {"Request throughput (req/s):", "Output token throughput (tok/s):",
                            "Mean TTFT (ms):", "Median TPOT (ms):", "P99 ITL (ms):",
                            "Mean E2EL (ms):"}) {
    EXPECT_GT(Field(out, label), 0) << label << "\n" << out;
  }
  // The server saw exactly these requests.
  EXPECT_EQ(Metric(server->http().port(), "vllm:generation_tokens_total"), 12 * 8);
}

TEST(BenchServe, PercentilesMatchNumpyLinearInterpolation) {
  std::vector<double> s;
  for (int i = 1; i <= 100; ++i) s.push_back(i / 1000.0);  // 1..100 ms
  const server::LatencyStats st = server::Summarize(s);
  // numpy.percentile(range(1, 101), [50, 99]) = [50.5, 99.01]; mean 50.5.
  EXPECT_NEAR(st.mean, 50.5, 1e-9);
  EXPECT_NEAR(st.median, 50.5, 1e-9);
  EXPECT_NEAR(st.p99, 99.01, 1e-9);
}

TEST(BenchServe, UnreachableServerFailsClearly) {
  int status = -1;
  const std::string out = RunCommand(StrCat(GS_BINARY, " bench-serve --port 1 --num-prompts 1 2>&1"),
                                     &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("bench-serve: error"), std::string::npos) << out;
}

}  // namespace
}  // namespace gs::test
