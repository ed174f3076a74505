#include "server/bench_client.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server/sse_client.h"
#include "util/str.h"

namespace gs::server {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

Expected<Json> GetJson(httplib::Client& client, const std::string& path, const std::string& key) {
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
  auto res = client.Get(path.c_str(), headers);
  if (!res) return MakeError("GET ", path, ": ", httplib::to_string(res.error()));
  if (res->status != 200) return MakeError("GET ", path, ": HTTP ", res->status, ": ", res->body);
  try {
    return Json::parse(res->body);
  } catch (const std::exception& e) {
    return MakeError("GET ", path, ": invalid JSON: ", e.what());
  }
}

Expected<Json> PostJson(httplib::Client& client, const std::string& path, const Json& body,
                        const std::string& key) {
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
  auto res = client.Post(path.c_str(), headers, body.dump(), "application/json");
  if (!res) return MakeError("POST ", path, ": ", httplib::to_string(res.error()));
  if (res->status != 200) return MakeError("POST ", path, ": HTTP ", res->status, ": ", res->body);
  try {
    return Json::parse(res->body);
  } catch (const std::exception& e) {
    return MakeError("POST ", path, ": invalid JSON: ", e.what());
  }
}

// Random lowercase words; the server's tokenizer turns them into at least `tokens` ids.
Expected<std::vector<int32_t>> RandomPrompt(httplib::Client& client, const BenchOptions& o,
                                            std::mt19937_64& rng) {
  std::uniform_int_distribution<int> letter('a', 'z'), word_len(2, 9);
  std::string text;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int words = std::max(16, o.input_len) * (attempt + 1);
    for (int w = 0; w < words; ++w) {
      if (!text.empty()) text += ' ';
      const int n = word_len(rng);
      for (int i = 0; i < n; ++i) text += static_cast<char>(letter(rng));
    }
    GS_ASSIGN_OR_RETURN(Json tok, PostJson(client, "/tokenize",
                                           Json{{"prompt", text}, {"add_special_tokens", false}},
                                           o.api_key));
    std::vector<int32_t> ids = tok.at("tokens").get<std::vector<int32_t>>();
    if (static_cast<int>(ids.size()) >= o.input_len) {
      ids.resize(static_cast<size_t>(o.input_len));
      return ids;
    }
  }
  return MakeError("could not build a prompt of ", o.input_len, " tokens");
}

BenchRequestResult RunOne(const BenchOptions& o, const std::string& model,
                          const std::vector<int32_t>& prompt) {
  BenchRequestResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  Json body = {{"model", model},
               {"prompt", prompt},
               {"max_tokens", o.output_len},
               {"temperature", 0.0},
               {"ignore_eos", o.ignore_eos},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  const auto start = Clock::now();
  auto last = start;
  bool first = true;
  int usage_tokens = -1;
  std::string error;
  SseResult sse = PostStream(o.host, o.port, "/v1/completions", body.dump(), o.api_key,
                             [&](const std::string& data) {
                               const auto now = Clock::now();
                               Json chunk;
                               try {
                                 chunk = Json::parse(data);
                               } catch (const std::exception& e) {
                                 error = StrCat("bad chunk: ", e.what());
                                 return false;
                               }
                               if (chunk.contains("error")) {
                                 error = chunk["error"].dump();
                                 return false;
                               }
                               if (chunk.contains("usage") && chunk["usage"].is_object()) {
                                 usage_tokens = chunk["usage"].value("completion_tokens", -1);
                               }
                               if (!chunk.contains("choices") || chunk["choices"].empty()) return true;
                               if (first) {
                                 r.ttft = Seconds(now - start);
                                 first = false;
                               } else {
                                 r.itl.push_back(Seconds(now - last));
                               }
                               last = now;
                               return true;
                             },
                             o.timeout_s);
  r.e2el = Seconds(Clock::now() - start);
  if (sse.status != 200) {
    r.error = StrCat("HTTP ", sse.status, " ", sse.body, sse.error);
  } else if (!error.empty()) {
    r.error = error;
  } else if (!sse.completed) {
    r.error = StrCat("stream ended without [DONE] ", sse.error);
  } else if (usage_tokens < 0) {
    r.error = "no usage chunk";
  } else {
    r.ok = true;
    r.output_tokens = usage_tokens;
  }
  return r;
}

std::vector<double> ArrivalOffsets(const BenchOptions& o, std::mt19937_64& rng) {
  std::vector<double> at(static_cast<size_t>(o.num_prompts), 0.0);
  if (!std::isfinite(o.request_rate) || o.request_rate <= 0) return at;
  std::exponential_distribution<double> gap(o.request_rate);
  double t = 0;
  for (double& a : at) {
    a = t;
    t += gap(rng);
  }
  return at;
}

}  // namespace

LatencyStats Summarize(std::vector<double> s) {
  LatencyStats out;
  if (s.empty()) return out;
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double v : s) sum += v;
  auto pct = [&](double p) {
    const double pos = p / 100.0 * static_cast<double>(s.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, s.size() - 1);
    return s[lo] + (s[hi] - s[lo]) * (pos - static_cast<double>(lo));
  };
  out.mean = sum / static_cast<double>(s.size()) * 1000.0;
  out.median = pct(50) * 1000.0;
  out.p99 = pct(99) * 1000.0;
  return out;
}

Expected<BenchReport> RunServingBenchmark(const BenchOptions& o) {
  if (o.num_prompts < 1) return MakeError("--num-prompts must be >= 1");
  if (o.input_len < 1 || o.output_len < 1) return MakeError("input and output lengths must be >= 1");
  httplib::Client client(o.host, o.port);
  client.set_read_timeout(o.timeout_s, 0);
  std::string model = o.model;
  if (model.empty()) {
    GS_ASSIGN_OR_RETURN(Json models, GetJson(client, "/v1/models", o.api_key));
    if (!models.contains("data") || models["data"].empty()) return MakeError("/v1/models lists no model");
    model = models["data"][0].value("id", "");
  }
  std::mt19937_64 rng(o.seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < o.num_prompts; ++i) {
    GS_ASSIGN_OR_RETURN(std::vector<int32_t> p, RandomPrompt(client, o, rng));
    prompts.push_back(std::move(p));
  }
  const std::vector<double> arrivals = ArrivalOffsets(o, rng);

  std::vector<BenchRequestResult> results(prompts.size());
  const int cap = o.max_concurrency > 0 ? o.max_concurrency : o.num_prompts;
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(arrivals[i])));
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < cap; });
      ++in_flight;
    }
    threads.emplace_back([&, i] {
      results[i] = RunOne(o, model, prompts[i]);
      {
        std::lock_guard<std::mutex> lock(mu);
        --in_flight;
      }
      cv.notify_all();
    });
  }
  for (std::thread& t : threads) t.join();
  const double duration = Seconds(Clock::now() - start);

  BenchReport rep;
  rep.num_prompts = o.num_prompts;
  rep.duration_s = duration;
  rep.max_concurrency = o.max_concurrency;
  rep.request_rate = o.request_rate;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const BenchRequestResult& r : results) {
    if (!r.ok) {
      ++rep.failed;
      if (rep.errors.size() < 5) rep.errors.push_back(r.error);
      continue;
    }
    ++rep.completed;
    rep.total_input += r.prompt_tokens;
    rep.total_output += r.output_tokens;
    ttft.push_back(r.ttft);
    e2el.push_back(r.e2el);
    if (r.output_tokens > 1) tpot.push_back((r.e2el - r.ttft) / (r.output_tokens - 1));
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
  }
  rep.request_throughput = rep.completed / duration;
  rep.output_throughput = static_cast<double>(rep.total_output) / duration;
  rep.total_throughput = static_cast<double>(rep.total_input + rep.total_output) / duration;
  rep.ttft = Summarize(ttft);
  rep.tpot = Summarize(tpot);
  rep.itl = Summarize(itl);
  rep.e2el = Summarize(e2el);
  return rep;
}

std::string BenchReport::Table() const {
  std::string out;
  char line[160];
  auto row = [&](const char* label, const std::string& value) {
    std::snprintf(line, sizeof line, "%-40s %-10s\n", label, value.c_str());
    out += line;
  };
  auto num = [](double v, int digits) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return std::string(b);
  };
  auto section = [&](const char* title) {
    std::string t = title;
    const size_t pad = t.size() < 50 ? 50 - t.size() : 0;
    out += std::string(pad / 2, '-') + t + std::string(pad - pad / 2, '-') + "\n";
  };
  out += "============ Serving Benchmark Result ============\n";
  row("Successful requests:", std::to_string(completed));
  row("Failed requests:", std::to_string(failed));
  row("Maximum request concurrency:", max_concurrency > 0 ? std::to_string(max_concurrency) : "inf");
  row("Request rate configured (RPS):", std::isfinite(request_rate) ? num(request_rate, 2) : "inf");
  row("Benchmark duration (s):", num(duration_s, 2));
  row("Total input tokens:", std::to_string(total_input));
  row("Total generated tokens:", std::to_string(total_output));
  row("Request throughput (req/s):", num(request_throughput, 2));
  row("Output token throughput (tok/s):", num(output_throughput, 2));
  row("Total Token throughput (tok/s):", num(total_throughput, 2));
  auto stats = [&](const char* title, const char* name, const LatencyStats& s) {
    section(title);
    row(StrCat("Mean ", name, " (ms):").c_str(), num(s.mean, 2));
    row(StrCat("Median ", name, " (ms):").c_str(), num(s.median, 2));
    row(StrCat("P99 ", name, " (ms):").c_str(), num(s.p99, 2));
  };
  stats("Time to First Token", "TTFT", ttft);
  stats("Time per Output Token (excl. 1st token)", "TPOT", tpot);
  stats("Inter-token Latency", "ITL", itl);
  stats("End-to-end Latency", "E2EL", e2el);
  out += "==================================================\n";
  for (const std::string& e : errors) out += "error: " + e + "\n";
  return out;
}

}  // namespace gs::server
