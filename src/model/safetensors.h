// safetensors files, memory-mapped and validated. A checkpoint is one file or several shards
// listed by model.safetensors.index.json; TensorStore presents them as one name -> tensor map.
//
// Every header is checked before any tensor is used: JSON size (<= 100 MB) and nesting depth,
// known dtypes, shape x dtype size == byte size, offsets inside the file's data section, no
// overlapping tensors. Errors name the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util/mapped_file.h"
#include "util/status.h"

namespace gs {

// Values index the name/size table in safetensors.cpp (a static_assert keeps them in step).
// clang-format off
enum class DType {
  kBool, kU8, kI8, kI16, kU16, kI32, kU32, kI64, kU64, kF16, kBF16, kF32, kF64, kF8E4M3, kF8E5M2
};
// clang-format on

// "BF16", "F8_E4M3", ... as written in safetensors headers.
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);
Expected<DType> ParseDType(const std::string& name);

struct TensorView {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  // Inside a mapping owned by the SafetensorsFile / TensorStore. NOT aligned: the format puts
  // tensors at any byte offset, so read it with memcpy (or copy to the device), never through a
  // cast to float* / uint16_t*.
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // the file it came from, for error messages

  int64_t numel() const;
  std::string ShapeString() const;  // "[704, 1408]"
};

class SafetensorsFile {
 public:
  static Expected<SafetensorsFile> Open(const std::string& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }
  void ReleasePages() const { file_.ReleasePages(); }

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

class TensorStore {
 public:
  // `dir` holds model.safetensors.index.json and its shards, else model.safetensors (used alone
  // when present), else (for tools and tests) any set of *.safetensors files, opened in name
  // order. Tensor names must be unique across shards; with an index, every tensor it names must
  // be in the shard it names, shard names must be plain file names (no '/', no '..'), and a
  // tensor in a shard but absent from the weight_map is an error.
  static Expected<TensorStore> OpenDirectory(const std::string& dir);
  static Expected<TensorStore> OpenFiles(const std::vector<std::string>& paths);

  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, const TensorView*>& all() const { return index_; }
  size_t total_bytes() const;
  // Drops every resident page of every mapped file (MappedFile::ReleasePages); views stay valid.
  void ReleasePages() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Writes tensors to one safetensors file, via `path + ".tmp"` renamed over `path` (a failure
// leaves no partial file). Tensors are laid out in the given order; the header is padded with
// spaces to a multiple of 8 bytes, as the HF writer does. Used by make-demo-model, convert,
// quantize and tests.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// The same without holding every tensor in memory: `produce(i, scratch)` returns tensor i's
// bytes, either a span into memory that outlives the call (a mapped input file) or one into
// `scratch`, which it may fill. Used by convert and quantize to stream 17 GB checkpoints.
// Bytes go out with write() in chunks of at most kWriteChunkBytes; `written(n)`, when given, is
// called after each chunk (progress, and releasing the pages of a mapped source as it is read).
struct TensorPlan {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
using TensorProducer =
    std::function<Expected<std::span<const uint8_t>>(size_t index, std::vector<uint8_t>& scratch)>;
inline constexpr size_t kWriteChunkBytes = size_t{32} << 20;
Status WriteSafetensorsStreaming(const std::string& path, const std::vector<TensorPlan>& tensors,
                                 const TensorProducer& produce,
                                 const std::map<std::string, std::string>& metadata = {},
                                 const std::function<void(size_t bytes)>& written = {});

}  // namespace gs
