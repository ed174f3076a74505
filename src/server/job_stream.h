// The streaming loop shared by chat and completions: opening chunks, one chunk per choice that
// changed, an optional usage chunk, `data: [DONE]`. A keep-alive comment goes out after a quiet
// spell so that a client that left while its request waited in the queue is noticed (the write
// fails) and its request cancelled.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "server/generation_job.h"
#include "server/serving_context.h"

namespace gs::server {

class JobStream : public StreamSession {
 public:
  bool Pump(const Writer& write) override;
  void Abort() override { job_->Cancel(); }

 protected:
  JobStream(std::unique_ptr<GenerationJob> job, const OutputOptions& output, std::string id,
            std::string object, std::string model);
  // The first chunks (chat: the role of each choice; completions: nothing). False: client gone.
  virtual bool WriteOpening(const Writer& write) = 0;
  // The chunk for one choice's delta; nothing if it carries nothing to send. False: client gone.
  virtual bool WriteDelta(int index, ChoiceDelta& delta, const Writer& write) = 0;

  // {"id", "object", "created", "model", "choices": [choice]} (+ usage when continuous).
  Json Chunk(Json choice) const;
  bool WriteError(const std::string& message, const Writer& write) const;

  std::unique_ptr<GenerationJob> job_;
  const OutputOptions output_;

 private:
  const std::string id_, object_, model_;
  const int64_t created_;
  bool opened_ = false;
  bool closed_ = false;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
};

}  // namespace gs::server
