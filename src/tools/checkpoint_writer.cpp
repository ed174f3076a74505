#include "tools/checkpoint_writer.h"

#include <cstdio>
#include <filesystem>

#include "tools/source_pages.h"
#include "util/mapped_file.h"
#include "util/progress.h"

namespace gs {
namespace fs = std::filesystem;

Expected<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Begin(const std::string& to,
                                                                    bool overwrite) {
  std::error_code ec;
  if (fs::exists(to, ec) && !overwrite) {
    return MakeError("output ", to, " already exists (pass --overwrite to replace it)");
  }
  const std::string partial = to + ".partial";
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (ec) return MakeError("cannot create ", partial, ": ", ec.message());
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(to, partial, overwrite));
}

CheckpointWriter::~CheckpointWriter() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(partial_, ec);
}

Status CheckpointWriter::WriteTensors(const std::vector<OutputTensor>& tensors,
                                      uint64_t max_shard_bytes, const std::string& progress_label,
                                      const TensorStore* source) {
  // Greedy shards in the given order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t n = DTypeSize(tensors[i].plan.dtype);
    for (int64_t d : tensors[i].plan.shape) n *= static_cast<uint64_t>(d);
    if (shard_bytes > 0 && shard_bytes + n > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += n;
    total += n;
  }
  ProgressBar bar(progress_label, total, "B");
  SourcePages pages(source);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    if (shards.size() == 1) std::snprintf(name, sizeof name, "model.safetensors");
    else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<TensorPlan> plans;
    for (size_t i : shards[s]) {
      plans.push_back(tensors[i].plan);
      weight_map[tensors[i].plan.name] = name;
    }
    GS_RETURN_IF_ERROR(WriteSafetensorsStreaming(
        (fs::path(partial_) / name).string(), plans,
        [&](size_t k, std::vector<uint8_t>& scratch) -> Expected<std::span<const uint8_t>> {
          const OutputTensor& t = tensors[shards[s][k]];
          GS_ASSIGN_OR_RETURN(std::span<const uint8_t> bytes, t.produce(scratch));
          pages.Read(t.source_bytes);
          return bytes;
        },
        {{"format", "pt"}},
        [&](size_t n) {
          bar.Advance(n);
          pages.Read(n);  // a span into the source is read as it is written
        }));
  }
  pages.Release();
  bar.Finish();
  if (shards.size() == 1) return Ok();
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return WriteJson("model.safetensors.index.json", index);
}

Status CheckpointWriter::WriteJson(const std::string& name, const nlohmann::json& value) {
  return WriteTextFile((fs::path(partial_) / name).string(), value.dump(2) + "\n");
}

Status CheckpointWriter::CopyOtherFiles(const std::string& from_dir,
                                        const std::function<bool(const std::string&)>& skip) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(from_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || skip(name)) continue;
    fs::copy_file(entry.path(), fs::path(partial_) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return MakeError("cannot copy ", entry.path().string(), ": ", ec.message());
  }
  if (ec) return MakeError("cannot list ", from_dir, ": ", ec.message());
  return Ok();
}

Status CheckpointWriter::CopyNonWeightFiles(const std::string& from_dir) {
  return CopyOtherFiles(from_dir, [](const std::string& name) {
    return name.ends_with(".safetensors") || name == "model.safetensors.index.json" ||
           name == "config.json" || name == "hf_quant_config.json" || name.ends_with(".tmp");
  });
}

Status CheckpointWriter::Commit() {
  std::error_code ec;
  if (fs::exists(to_, ec)) {
    if (!overwrite_) return MakeError("output ", to_, " appeared while writing; not replaced");
    fs::remove_all(to_, ec);
    if (ec) return MakeError("cannot remove the old ", to_, ": ", ec.message());
  }
  fs::rename(partial_, to_, ec);
  if (ec) return MakeError("cannot move ", partial_, " to ", to_, ": ", ec.message());
  committed_ = true;
  return Ok();
}

}  // namespace gs
