#include "server/job_stream.h"

#include "server/response_format.h"
#include "server/sse.h"

namespace gs::server {
namespace {
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr auto kKeepAlive = std::chrono::seconds(2);
}  // namespace

JobStream::JobStream(std::unique_ptr<GenerationJob> job, const OutputOptions& output,
                     std::string id, std::string object, std::string model)
    : job_(std::move(job)),
      output_(output),
      id_(std::move(id)),
      object_(std::move(object)),
      model_(std::move(model)),
      created_(UnixSeconds()) {}

Json JobStream::Chunk(Json choice) const {
  Json c = Json::object();
  c["id"] = id_;
  c["object"] = object_;
  c["created"] = created_;
  c["model"] = model_;
  c["choices"] = Json::array({std::move(choice)});
  if (output_.continuous_usage_stats && output_.include_usage) c["usage"] = UsageJson(job_->usage());
  return c;
}

bool JobStream::WriteError(const std::string& message, const Writer& write) const {
  return write(SseData(InternalError(message).ToJson()));
}

bool JobStream::Pump(const Writer& write) {
  if (closed_) return false;
  if (!opened_) {
    opened_ = true;
    last_write_ = std::chrono::steady_clock::now();
    if (!WriteOpening(write)) return false;
  }
  if (job_->done()) {
    closed_ = true;
    if (output_.include_usage) {
      Json c = Json::object();
      c["id"] = id_;
      c["object"] = object_;
      c["created"] = created_;
      c["model"] = model_;
      c["choices"] = Json::array();
      c["usage"] = UsageJson(job_->usage());
      if (!write(SseData(c))) return false;
    }
    write(SseDone());
    return false;
  }
  auto deltas = job_->Poll(kPollInterval);
  const auto now = std::chrono::steady_clock::now();
  bool wrote = false;
  for (auto& [index, delta] : deltas) {
    if (!WriteDelta(index, delta, write)) {
      job_->Cancel();
      closed_ = true;
      return false;
    }
    wrote = true;
  }
  if (wrote) {
    last_write_ = now;
  } else if (now - last_write_ > kKeepAlive) {
    last_write_ = now;
    if (!write(SseComment("keep-alive"))) {
      job_->Cancel();
      closed_ = true;
      return false;
    }
  }
  return true;
}

}  // namespace gs::server
