#include "server/metrics.h"

#include <cstdio>
#include <sstream>

namespace gs::server {
namespace {

class Writer {
 public:
  explicit Writer(const std::string& model) : label_("model_name=\"" + Escape(model) + "\"") {}

  void Header(const std::string& name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void Sample(const std::string& name, double value, const std::string& extra = "") {
    out_ << name << "{" << label_ << (extra.empty() ? "" : ",") << extra << "} " << Num(value)
         << "\n";
  }
  void Gauge(const std::string& name, const char* help, double value) {
    Header(name, "gauge", help);
    Sample(name, value);
  }
  void Counter(const std::string& name, const char* help, double value) {
    Header(name, "counter", help);
    Sample(name, value);
  }
  // Prometheus histograms are cumulative; ours count per bucket.
  void Hist(const std::string& name, const char* help, const Histogram& h) {
    Header(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      const std::string le = i < h.bounds.size() ? Num(h.bounds[i]) : "+Inf";
      Sample(name + "_bucket", static_cast<double>(cumulative), "le=\"" + le + "\"");
    }
    Sample(name + "_sum", h.sum);
    Sample(name + "_count", static_cast<double>(h.count));
  }
  std::string str() const { return out_.str(); }

 private:
  static std::string Escape(const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '\\' || c == '"') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o += c;
    }
    return o;
  }
  static std::string Num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  }

  std::string label_;
  std::ostringstream out_;
};

}  // namespace

std::string FormatPrometheus(const EngineMetrics& m, const HttpStats& http,
                             const std::string& model_name) {
  Writer w(model_name);
  w.Gauge("vllm:num_requests_running", "Sequences in model execution batches.", m.num_running_seqs);
  w.Gauge("vllm:num_requests_waiting", "Sequences waiting to be processed (incl. preempted).",
          m.num_waiting_seqs);
  const double usage = m.kv_blocks_total > 0
                           ? static_cast<double>(m.kv_blocks_used) / m.kv_blocks_total
                           : 0.0;
  w.Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage);
  w.Counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in tokens.",
            static_cast<double>(m.prefix_cache_queries));
  w.Counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in tokens.",
            static_cast<double>(m.prefix_cache_hits));
  w.Counter("vllm:num_preemptions_total", "Cumulative number of preemptions.",
            static_cast<double>(m.preemptions));
  w.Counter("gemmaserve:images_encoded_total",
            "Images run through the vision encoder (again after a preemption).",
            static_cast<double>(m.images_encoded));
  w.Counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
            static_cast<double>(m.prompt_tokens));
  w.Counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
            static_cast<double>(m.generation_tokens));
  w.Header("vllm:request_success_total", "counter",
           "Count of finished sequences, by finish reason.");
  for (FinishReason r : {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort,
                         FinishReason::kError}) {
    w.Sample("vllm:request_success_total",
             static_cast<double>(m.finished_sequences[static_cast<size_t>(r)]),
             std::string("finished_reason=\"") + FinishReasonName(r) + "\"");
  }
  w.Hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
         m.ttft_seconds);
  w.Hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
         m.inter_token_seconds);
  w.Hist("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
         m.e2e_seconds);
  w.Hist("vllm:request_queue_time_seconds", "Histogram of time spent waiting in the queue.",
         m.queue_seconds);
  w.Gauge("gemmaserve:num_waiting_requests", "Requests submitted and not yet started.",
          m.num_waiting_requests);
  w.Gauge("gemmaserve:kv_blocks_used", "Global-layer KV blocks held by sequences.",
          m.kv_blocks_used);
  w.Gauge("gemmaserve:kv_blocks_total", "Global-layer KV blocks in the pool.", m.kv_blocks_total);
  w.Gauge("gemmaserve:kv_blocks_cached", "KV blocks registered in the prefix cache.",
          m.kv_blocks_cached);
  w.Gauge("gemmaserve:prefix_snapshots", "Sliding-window state snapshots held.", m.prefix_snapshots);
  w.Counter("gemmaserve:computed_tokens_total", "Tokens run through the model (incl. recompute).",
            static_cast<double>(m.computed_tokens));
  w.Counter("gemmaserve:engine_steps_total", "Engine forward steps.", static_cast<double>(m.steps));
  w.Counter("gemmaserve:http_requests_total", "HTTP requests received.",
            static_cast<double>(http.requests.load()));
  w.Counter("gemmaserve:http_client_errors_total", "HTTP requests answered with a 4xx status.",
            static_cast<double>(http.client_errors.load()));
  w.Counter("gemmaserve:http_rejected_total", "Requests refused for overload or shutdown.",
            static_cast<double>(http.rejected.load()));
  w.Counter("gemmaserve:stream_disconnects_total", "Streams whose client left before the end.",
            static_cast<double>(http.disconnects.load()));
  w.Counter("gemmaserve:request_disconnects_total",
            "Non-streaming requests cancelled because their client left before the answer.",
            static_cast<double>(http.request_disconnects.load()));
  w.Gauge("gemmaserve:active_streams", "Streaming responses in progress.",
          static_cast<double>(http.active_streams.load()));
  return w.str();
}

}  // namespace gs::server
