#include "model/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <utility>

namespace gs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Limits on untrusted JSON (safetensors headers, index files). Real headers are well under 10 MB
// and two levels deep; the limits only keep a hostile file from exhausting memory or stack.
constexpr uint64_t kMaxJsonBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxParserMessage = 300;
constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

// Indexed by the enum's value (checked below), named as safetensors headers spell them.
constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},        {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},   {DType::kI64, "I64", 8},        {DType::kU64, "U64", 8},
    {DType::kF16, "F16", 2},   {DType::kBF16, "BF16", 2},      {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},   {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};
constexpr size_t kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

constexpr bool DTypeTableIsIndexed() {
  for (size_t i = 0; i < kNumDTypes; ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(DTypeTableIsIndexed(), "kDTypes must list DType values in enum order");

const DTypeInfo* FindDType(DType dtype) {
  const auto i = static_cast<size_t>(dtype);
  return i < kNumDTypes ? &kDTypes[i] : nullptr;
}

std::string Truncated(std::string s) {
  if (s.size() > kMaxParserMessage) {
    s.resize(kMaxParserMessage);
    s += "...";
  }
  return s;
}

// First pass over untrusted JSON: syntax, nesting depth and duplicate keys. nlohmann's SAX
// parser keeps its own state on the heap, so a 10000-deep header cannot overflow the stack; we
// stop it at kMaxJsonDepth before any DOM exists. Duplicate keys are rejected because the DOM
// would silently keep only one of them (two tensors with the same name are ambiguous).
class JsonChecker : public json::json_sax_t {
 public:
  const std::string& error() const { return error_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return Enter();
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      // Name the enclosing top-level key too: for a header, that is the tensor.
      error_ =
          Truncated(keys_.size() > 1 ? StrCat("duplicate key '", k, "' inside '", top_key_, "'")
                                     : StrCat("duplicate key '", k, "'"));
      return false;
    }
    if (keys_.size() == 1) top_key_ = k;
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = Truncated(e.what());
    return false;
  }

 private:
  bool Enter() {
    if (++depth_ > kMaxJsonDepth) {
      error_ = StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels");
      return false;
    }
    return true;
  }

  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // keys seen in each open object
  std::string top_key_;
  std::string error_;
};

// Parses JSON that passed JsonChecker; `what` prefixes every error ("<file>: header").
Expected<json> ParseUntrustedJson(const char* begin, const char* end, const std::string& what) {
  try {
    JsonChecker checker;
    if (!json::sax_parse(begin, end, &checker)) {
      return MakeError(what, ": ", checker.error().empty() ? "invalid JSON" : checker.error());
    }
    return json::parse(begin, end);
  } catch (const std::exception& e) {  // json::exception or bad_alloc
    return MakeError(what, ": ", Truncated(e.what()));
  }
}

const char* JsonTypeName(const json& v) { return v.type_name(); }

// A non-negative JSON integer. Floats ("2.0", and integers too large for uint64, which nlohmann
// stores as floats) are rejected rather than rounded.
Expected<uint64_t> NonNegativeInteger(const json& v, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < 0) return MakeError(what, " is negative (", x, ")");
    return static_cast<uint64_t>(x);
  }
  if (v.is_number_float()) return MakeError(what, " is not an integer (", v.dump(), ")");
  return MakeError(what, " must be a non-negative integer, not ", JsonTypeName(v));
}

// Byte count of a tensor, or an error when a dimension is negative or the product overflows.
Expected<uint64_t> TensorBytes(const std::vector<int64_t>& shape, DType dtype,
                               const std::string& what) {
  uint64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return MakeError(what, ": shape[", i, "] is negative (", shape[i], ")");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(shape[i]), &n)) {
      return MakeError(what, ": element count of the shape overflows");
    }
  }
  // Element counts must also fit int64 (TensorView::numel returns int64_t).
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return MakeError(what, ": element count overflows");
  }
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(DTypeSize(dtype)), &n)) {
    return MakeError(what, ": byte size overflows");
  }
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::vector<std::string> dims;
  for (int64_t d : shape) dims.push_back(std::to_string(d));
  return StrCat("[", Join(dims, ", "), "]");
}

struct ParsedEntry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

Expected<std::vector<int64_t>> ParseShape(const json& v, const std::string& what) {
  if (!v.is_array()) return MakeError(what, ": 'shape' must be an array, not ", JsonTypeName(v));
  std::vector<int64_t> shape;
  shape.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    GS_ASSIGN_OR_RETURN(const uint64_t dim,
                        NonNegativeInteger(v[i], StrCat(what, ": shape[", i, "]")));
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return MakeError(what, ": shape[", i, "] is too large (", dim, ")");
    }
    shape.push_back(static_cast<int64_t>(dim));
  }
  return shape;
}

// One header entry: {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, checked
// against the data section's size. `what` is "<file>: tensor '<name>'".
Expected<ParsedEntry> ParseEntry(const std::string& name, const json& entry, uint64_t data_size,
                                 const std::string& what) {
  if (!entry.is_object()) {
    return MakeError(what, ": entry must be an object, not ", JsonTypeName(entry));
  }
  for (const auto& item : entry.items()) {
    const std::string& k = item.key();
    if (k != "dtype" && k != "shape" && k != "data_offsets") {
      return MakeError(what, ": unknown key '", Truncated(k),
                       "' (expected dtype, shape, data_offsets)");
    }
  }
  for (const char* k : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(k)) return MakeError(what, ": missing key '", k, "'");
  }
  ParsedEntry out;
  out.view.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) {
    return MakeError(what, ": 'dtype' must be a string, not ", JsonTypeName(dtype));
  }
  auto parsed_dtype = ParseDType(dtype.get<std::string>());
  if (!parsed_dtype.ok()) return MakeError(what, ": ", parsed_dtype.error().message);
  out.view.dtype = *parsed_dtype;
  GS_ASSIGN_OR_RETURN(out.view.shape, ParseShape(entry["shape"], what));
  GS_ASSIGN_OR_RETURN(const uint64_t nbytes, TensorBytes(out.view.shape, out.view.dtype, what));

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    return MakeError(what, ": 'data_offsets' must be an array [begin, end], got ",
                     Truncated(offsets.dump()));
  }
  GS_ASSIGN_OR_RETURN(out.begin, NonNegativeInteger(offsets[0], what + ": data_offsets[0]"));
  GS_ASSIGN_OR_RETURN(out.end, NonNegativeInteger(offsets[1], what + ": data_offsets[1]"));
  if (out.end < out.begin) {
    return MakeError(what, ": data_offsets end ", out.end, " is before begin ", out.begin);
  }
  if (out.end > data_size) {
    return MakeError(what, ": data_offsets [", out.begin, ", ", out.end,
                     "] run past the data section (", data_size, " bytes)");
  }
  if (out.end - out.begin != nbytes) {
    return MakeError(what, ": data_offsets span ", out.end - out.begin, " bytes but ",
                     DTypeName(out.view.dtype), " ", out.view.ShapeString(), " needs ", nbytes);
  }
  out.view.nbytes = static_cast<size_t>(nbytes);
  return out;
}

Status ParseMetadata(const json& v, const std::string& path,
                     std::map<std::string, std::string>* metadata) {
  if (!v.is_object()) {
    return MakeError(path, ": __metadata__ must be an object, not ", JsonTypeName(v));
  }
  for (const auto& item : v.items()) {
    if (!item.value().is_string()) {
      return MakeError(path, ": __metadata__ value of '", Truncated(item.key()),
                       "' must be a string, not ", JsonTypeName(item.value()));
    }
    (*metadata)[item.key()] = item.value().get<std::string>();
  }
  return Ok();
}

// Two tensors must never share a byte. Empty tensors own no bytes, so they overlap nothing.
Status CheckNoOverlap(std::vector<const ParsedEntry*> entries, const std::string& path) {
  std::erase_if(entries, [](const ParsedEntry* e) { return e->begin == e->end; });
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry* a, const ParsedEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < entries.size(); ++i) {
    const ParsedEntry& prev = *entries[i - 1];
    const ParsedEntry& cur = *entries[i];
    if (cur.begin < prev.end) {
      return MakeError(path, ": tensor '", cur.view.name, "' [", cur.begin, ", ", cur.end,
                       ") overlaps tensor '", prev.view.name, "' [", prev.begin, ", ", prev.end,
                       ")");
    }
  }
  return Ok();
}

// Validates the whole header of a mapped file and fills the tensor and metadata maps.
Status ParseHeader(const MappedFile& file, std::map<std::string, TensorView>* tensors,
                   std::map<std::string, std::string>* metadata) {
  const std::string& path = file.path();
  if (file.size() < 8) {
    return MakeError(path, ": file is ", file.size(),
                     " bytes, shorter than the 8-byte safetensors header length");
  }
  uint64_t header_len = 0;  // little-endian regardless of the host
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file.data()[i];
  if (header_len > kMaxJsonBytes) {
    return MakeError(path, ": header length ", header_len, " exceeds the limit of ", kMaxJsonBytes,
                     " bytes");
  }
  if (header_len > file.size() - 8) {
    return MakeError(path, ": header length ", header_len, " runs past the end of the file (",
                     file.size(), " bytes)");
  }
  const auto* header = reinterpret_cast<const char*>(file.data() + 8);
  GS_ASSIGN_OR_RETURN(json root,
                      ParseUntrustedJson(header, header + header_len, path + ": header"));
  if (!root.is_object()) {
    return MakeError(path, ": header must be a JSON object, not ", JsonTypeName(root));
  }
  const uint8_t* data = file.data() + 8 + header_len;
  const uint64_t data_size = file.size() - 8 - header_len;

  std::vector<ParsedEntry> entries;
  entries.reserve(root.size());
  for (const auto& item : root.items()) {
    if (item.key() == "__metadata__") {
      GS_RETURN_IF_ERROR(ParseMetadata(item.value(), path, metadata));
      continue;
    }
    const std::string what = StrCat(path, ": tensor '", Truncated(item.key()), "'");
    GS_ASSIGN_OR_RETURN(ParsedEntry entry, ParseEntry(item.key(), item.value(), data_size, what));
    entries.push_back(std::move(entry));
  }
  std::vector<const ParsedEntry*> refs;
  for (const ParsedEntry& e : entries) refs.push_back(&e);
  GS_RETURN_IF_ERROR(CheckNoOverlap(std::move(refs), path));

  for (ParsedEntry& e : entries) {
    e.view.data = data + e.begin;
    e.view.file = path;
    std::string name = e.view.name;
    tensors->emplace(std::move(name), std::move(e.view));
  }
  return Ok();
}

// A shard named by an index must be a plain file name inside the checkpoint directory.
Status CheckShardName(const std::string& shard, const std::string& index_path,
                      const std::string& tensor) {
  if (shard.empty() || shard.find('/') != std::string::npos ||
      shard.find('\\') != std::string::npos || shard.find("..") != std::string::npos ||
      shard.find('\0') != std::string::npos || shard == ".") {
    return MakeError(index_path, ": tensor '", tensor, "': shard file name '", Truncated(shard),
                     "' must be a plain file name in the checkpoint directory");
  }
  return Ok();
}

// weight_map of model.safetensors.index.json: tensor name -> shard file name.
Expected<std::map<std::string, std::string>> ReadIndex(const std::string& index_path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(index_path, ec);
  if (ec) return MakeError("cannot read ", index_path, ": ", ec.message());
  if (size > kMaxJsonBytes) {
    return MakeError(index_path, ": ", size, " bytes exceeds the limit of ", kMaxJsonBytes);
  }
  GS_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(index_path));
  GS_ASSIGN_OR_RETURN(json root,
                      ParseUntrustedJson(text.data(), text.data() + text.size(), index_path));
  if (!root.is_object()) {
    return MakeError(index_path, ": must be a JSON object, not ", JsonTypeName(root));
  }
  if (root.contains("metadata") && !root["metadata"].is_object()) {
    return MakeError(index_path, ": 'metadata' must be an object");
  }
  if (!root.contains("weight_map")) return MakeError(index_path, ": missing 'weight_map'");
  const json& map = root["weight_map"];
  if (!map.is_object()) {
    return MakeError(index_path, ": 'weight_map' must be an object, not ", JsonTypeName(map));
  }
  if (map.empty()) return MakeError(index_path, ": 'weight_map' lists no tensors");
  std::map<std::string, std::string> weight_map;
  for (const auto& item : map.items()) {
    if (!item.value().is_string()) {
      return MakeError(index_path, ": tensor '", Truncated(item.key()),
                       "': shard must be a string, not ", JsonTypeName(item.value()));
    }
    const std::string shard = item.value().get<std::string>();
    GS_RETURN_IF_ERROR(CheckShardName(shard, index_path, item.key()));
    weight_map[item.key()] = shard;
  }
  return weight_map;
}

// RAII file descriptor for the writer: closes on every early return.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError("error while writing ", path, ": ", std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Ok();
}

// Header JSON for WriteSafetensors, padded with spaces (as the HF writer does) so the data
// section starts 8-byte aligned in the file.
Expected<std::string> BuildHeader(const std::string& path, const std::vector<TensorPlan>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorPlan& t : tensors) {
    const std::string what = StrCat(path, ": tensor '", t.name, "'");
    if (t.name.empty() || t.name == "__metadata__") return MakeError(what, ": invalid name");
    if (header.contains(t.name)) return MakeError(what, ": written twice");
    if (!FindDType(t.dtype)) return MakeError(what, ": invalid dtype");
    GS_ASSIGN_OR_RETURN(const uint64_t nbytes, TensorBytes(t.shape, t.dtype, what));
    json entry = json::object();
    entry["dtype"] = DTypeName(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = json::array({offset, offset + nbytes});
    header[t.name] = std::move(entry);
    offset += nbytes;
  }
  try {
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  } catch (const json::exception& e) {  // e.g. a name that is not valid UTF-8
    return MakeError(path, ": cannot encode header: ", e.what());
  }
}

Status WriteFileContents(int fd, const std::string& tmp, const std::string& header,
                         const std::vector<TensorPlan>& tensors, const TensorProducer& produce,
                         const std::function<void(size_t)>& written) {
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) len[i] = static_cast<uint8_t>(n & 0xff);
  GS_RETURN_IF_ERROR(WriteAll(fd, len, sizeof(len), tmp));
  GS_RETURN_IF_ERROR(WriteAll(fd, header.data(), header.size(), tmp));
  std::vector<uint8_t> scratch;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorPlan& t = tensors[i];
    const std::string what = StrCat(tmp, ": tensor '", t.name, "'");
    GS_ASSIGN_OR_RETURN(const uint64_t nbytes, TensorBytes(t.shape, t.dtype, what));
    GS_ASSIGN_OR_RETURN(const std::span<const uint8_t> bytes, produce(i, scratch));
    if (bytes.size() != nbytes) {
      return MakeError(what, ": has ", bytes.size(), " bytes but ", DTypeName(t.dtype), " ",
                       ShapeToString(t.shape), " needs ", nbytes);
    }
    for (size_t done = 0; done < bytes.size();) {
      const size_t n = std::min(kWriteChunkBytes, bytes.size() - done);
      GS_RETURN_IF_ERROR(WriteAll(fd, bytes.data() + done, n, tmp));
      done += n;
      if (written) written(n);
    }
  }
  if (::fsync(fd) != 0) return MakeError("cannot sync ", tmp, ": ", std::strerror(errno));
  return Ok();
}

}  // namespace

const char* DTypeName(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info ? info->name : "INVALID";
}

size_t DTypeSize(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info ? info->size : 0;
}

Expected<DType> ParseDType(const std::string& name) {
  std::vector<std::string> known;
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
    known.emplace_back(info.name);
  }
  return MakeError("unknown dtype '", Truncated(name), "' (known: ", Join(known, ", "), ")");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const { return ShapeToString(shape); }

Expected<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  SafetensorsFile file;
  GS_ASSIGN_OR_RETURN(file.file_, MappedFile::Open(path));
  GS_RETURN_IF_ERROR(ParseHeader(file.file_, &file.tensors_, &file.metadata_));
  return file;
}

Expected<TensorStore> TensorStore::OpenFiles(const std::vector<std::string>& paths) {
  TensorStore store;
  for (const std::string& path : paths) {
    GS_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
    store.files_.push_back(std::make_unique<SafetensorsFile>(std::move(file)));
    // The views live in the heap-allocated file's map, so these pointers survive moves.
    for (const auto& [name, view] : store.files_.back()->tensors()) {
      const auto [it, inserted] = store.index_.emplace(name, &view);
      if (!inserted) {
        return MakeError("tensor '", name, "' is in both ", it->second->file, " and ", path);
      }
    }
  }
  return store;
}

Expected<TensorStore> TensorStore::OpenDirectory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return MakeError("no such directory: ", dir);
  const fs::path root(dir);
  const std::string index_path = (root / kIndexName).string();
  if (fs::exists(index_path, ec)) {
    GS_ASSIGN_OR_RETURN(const auto weight_map, ReadIndex(index_path));
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : weight_map) shards.insert(shard);
    std::vector<std::string> paths;
    for (const std::string& shard : shards) paths.push_back((root / shard).string());
    GS_ASSIGN_OR_RETURN(TensorStore store, OpenFiles(paths));
    for (const auto& [tensor, shard] : weight_map) {
      const std::string shard_path = (root / shard).string();
      const TensorView* view = store.Find(tensor);
      if (!view || view->file != shard_path) {
        return MakeError(index_path, ": tensor '", tensor, "' should be in ", shard_path,
                         view ? StrCat(" but is in ", view->file) : " but is not in any shard");
      }
    }
    for (const auto& [tensor, view] : store.index_) {
      if (!weight_map.count(tensor)) {
        return MakeError(view->file, ": tensor '", tensor, "' is not listed in ", index_path);
      }
    }
    return store;
  }
  // No index: model.safetensors alone when present (other *.safetensors beside it may be
  // unrelated copies), else every *.safetensors file in name order.
  const std::string single = (root / kSingleName).string();
  if (fs::exists(single, ec)) return OpenFiles({single});
  std::vector<std::string> paths;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors") paths.push_back(it->path().string());
  }
  if (ec) return MakeError("cannot list ", dir, ": ", ec.message());
  if (paths.empty()) {
    return MakeError("no ", kIndexName, ", ", kSingleName, " or *.safetensors in ", dir);
  }
  std::sort(paths.begin(), paths.end());
  return OpenFiles(paths);
}

const TensorView* TensorStore::Find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

void TensorStore::ReleasePages() const {
  for (const auto& file : files_) file->ReleasePages();
}

size_t TensorStore::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, view] : index_) total += view->nbytes;
  return total;
}

Status WriteSafetensorsStreaming(const std::string& path, const std::vector<TensorPlan>& tensors,
                                 const TensorProducer& produce,
                                 const std::map<std::string, std::string>& metadata,
                                 const std::function<void(size_t)>& written) {
  GS_ASSIGN_OR_RETURN(const std::string header, BuildHeader(path, tensors, metadata));
  // Written beside the target and renamed over it, so a crash or a full disk never leaves a
  // half-written file under the real name.
  const std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return MakeError("cannot create ", tmp, ": ", std::strerror(errno));
  Status status = WriteFileContents(fd.get(), tmp, header, tensors, produce, written);
  if (status.ok() && ::close(fd.Release()) != 0) {
    status = MakeError("error while closing ", tmp, ": ", std::strerror(errno));
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = MakeError("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno));
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::vector<TensorPlan> plans;
  plans.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) plans.push_back({t.name, t.dtype, t.shape});
  return WriteSafetensorsStreaming(
      path, plans,
      [&](size_t i, std::vector<uint8_t>&) -> Expected<std::span<const uint8_t>> {
        return std::span<const uint8_t>(tensors[i].bytes);
      },
      metadata);
}

}  // namespace gs
