// A terminal progress bar for long work (loading, converting, benchmarking). Draws on stderr
// only when stderr is a terminal, so logs and tests stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace gs {

class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total, std::string unit = "");
  ~ProgressBar();
  void Advance(uint64_t amount);
  void Finish();

 private:
  void Draw(bool final);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  bool enabled_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace gs
