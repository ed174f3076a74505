// Read-only memory map of a whole file (RAII). Checkpoints are mapped, never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/status.h"

namespace gs {

class MappedFile {
 public:
  static Expected<MappedFile> Open(const std::string& path);
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the resident pages of [offset, offset + length), rounded out to whole pages and
  // clipped to the file. The mapping stays valid: a page touched again is read back from the
  // file with the same contents. Streaming tools (convert, quantize) call it so that their RSS
  // stays bounded instead of growing to the size of every page they have read.
  void ReleasePages(size_t offset, size_t length) const;
  void ReleasePages() const { ReleasePages(0, size_); }

 private:
  void Reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Whole-file read for small text files (configs, templates).
Expected<std::string> ReadTextFile(const std::string& path);
Status WriteTextFile(const std::string& path, const std::string& text);

}  // namespace gs
