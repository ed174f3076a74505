// gemmaserve bench-serve: load test of a running OpenAI-compatible server (gemmaserve or vLLM),
// as `vllm bench serve --dataset-name random`: fixed input/output lengths, Poisson arrivals or
// all at once, a concurrency cap; prints throughput and TTFT / TPOT / ITL / E2EL statistics.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "server/bench_client.h"

namespace gs::cli {

int RunBenchServe(int argc, char** argv) {
  CLI::App app{"Benchmark a running server with random prompts over streamed /v1/completions.\n"
               "Example: gemmaserve bench-serve --port 8000 --random-input-len 1024 "
               "--random-output-len 128 --num-prompts 200 --max-concurrency 32 --ignore-eos"};
  server::BenchOptions o;
  std::string rate = "inf", dataset = "random";
  app.add_option("--host", o.host, "server address");
  app.add_option("--port", o.port, "server port")->check(CLI::Range(1, 65535));
  app.add_option("--model", o.model, "model name (default: the server's first model)");
  app.add_option("--api-key", o.api_key, "Bearer token, if the server wants one");
  app.add_option("--dataset-name", dataset, "only 'random'")->check(CLI::IsMember({"random"}));
  app.add_option("--random-input-len", o.input_len, "prompt tokens per request")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--random-output-len", o.output_len, "max_tokens per request")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--num-prompts", o.num_prompts, "requests to send")->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-concurrency", o.max_concurrency, "requests in flight at most (0 = no cap)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--request-rate", rate, "requests per second, Poisson arrivals; 'inf' = all at once");
  app.add_flag("--ignore-eos", o.ignore_eos, "generate exactly --random-output-len tokens");
  app.add_option("--seed", o.seed, "seed for prompts and arrival times");
  app.add_option("--timeout", o.timeout_s, "per-request timeout in seconds")->check(CLI::Range(1, 86400));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (rate != "inf") {
    char* end = nullptr;
    o.request_rate = std::strtod(rate.c_str(), &end);
    if (end == rate.c_str() || *end != '\0' || !(o.request_rate > 0)) {
      return Fail("bench-serve", "--request-rate must be a positive number or 'inf', got '" + rate + "'");
    }
  }
  std::fprintf(stderr, "bench-serve: %d requests, input %d, output %d tokens, rate %s, concurrency %s\n",
               o.num_prompts, o.input_len, o.output_len, rate.c_str(),
               o.max_concurrency > 0 ? std::to_string(o.max_concurrency).c_str() : "unbounded");
  auto report = server::RunServingBenchmark(o);
  if (!report) return Fail("bench-serve", report.error().message);
  std::fputs(report->Table().c_str(), stdout);
  return report->failed == 0 ? 0 : 2;
}

}  // namespace gs::cli
