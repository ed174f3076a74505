#include "model/checkpoint.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <system_error>
#include <vector>

#include "util/mapped_file.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

// A Hugging Face repo id: ORG/NAME with the characters the Hub allows. Anything else (absolute
// paths, "a/b/c", "../x") is treated as a local path only.
bool IsHubId(const std::string& s) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  const std::string org = s.substr(0, slash);
  const std::string name = s.substr(slash + 1);
  for (const std::string& part : {org, name}) {
    if (part.empty() || part == "." || part == ".." || part.find("..") != std::string::npos) {
      return false;
    }
    for (char c : part) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
      if (!ok) return false;
    }
  }
  return true;
}

std::optional<std::string> Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

// The hub cache directory, resolved as huggingface_hub does: $HF_HUB_CACHE, else $HF_HOME/hub,
// else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
std::optional<fs::path> HubCacheDir() {
  if (auto v = Env("HF_HUB_CACHE")) return fs::path(*v);
  if (auto v = Env("HF_HOME")) return fs::path(*v) / "hub";
  if (auto v = Env("XDG_CACHE_HOME")) return fs::path(*v) / "huggingface" / "hub";
  if (auto v = Env("HOME")) return fs::path(*v) / ".cache" / "huggingface" / "hub";
  return std::nullopt;
}

bool HasConfig(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "config.json", ec);
}

// The revision refs/main names, when it is a plain snapshot name.
std::optional<std::string> MainRevision(const fs::path& repo) {
  auto text = ReadTextFile((repo / "refs" / "main").string());
  if (!text.ok()) return std::nullopt;
  std::string rev = *text;
  while (!rev.empty() && std::isspace(static_cast<unsigned char>(rev.back()))) rev.pop_back();
  if (rev.empty() || rev.find('/') != std::string::npos || rev.find("..") != std::string::npos) {
    return std::nullopt;
  }
  return rev;
}

// The snapshot with config.json whose directory was modified last (ties: the larger name, so the
// choice does not depend on directory order).
std::optional<fs::path> NewestSnapshot(const fs::path& snapshots) {
  std::optional<fs::path> best;
  fs::file_time_type best_time;
  std::error_code ec;
  for (fs::directory_iterator it(snapshots, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_directory(ec2) || !HasConfig(it->path())) continue;
    const fs::file_time_type t = fs::last_write_time(it->path(), ec2);
    if (ec2) continue;
    if (!best || t > best_time || (t == best_time && it->path().filename() > best->filename())) {
      best = it->path();
      best_time = t;
    }
  }
  return best;
}

Expected<std::string> ResolveHubId(const std::string& id) {
  std::vector<std::string> tried = {id + " (as a local directory: not found)"};
  const auto cache = HubCacheDir();
  const size_t slash = id.find('/');
  const std::string repo_name = "models--" + id.substr(0, slash) + "--" + id.substr(slash + 1);
  if (cache) {
    const fs::path repo = *cache / repo_name;
    const fs::path snapshots = repo / "snapshots";
    if (const auto rev = MainRevision(repo)) {
      const fs::path snap = snapshots / *rev;
      if (HasConfig(snap)) return snap.string();
      tried.push_back((snap / "config.json").string() + " (named by " +
                      (repo / "refs" / "main").string() + ")");
    }
    if (const auto snap = NewestSnapshot(snapshots)) return snap->string();
    tried.push_back((snapshots / "*" / "config.json").string());
  } else {
    tried.push_back("no Hugging Face cache (HF_HUB_CACHE, HF_HOME and HOME are unset)");
  }
  return MakeError("model '", id, "' is not a local directory and is not in the Hugging Face ",
                   "cache; tried:\n  ", Join(tried, "\n  "),
                   "\ndownload it with: huggingface-cli download ", id,
                   " (or pass --model DIR with a checkpoint directory)");
}

}  // namespace

Expected<std::string> ResolveModelPath(const std::string& model) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) {
    if (!HasConfig(model)) return MakeError("model directory ", model, " has no config.json");
    return model;
  }
  if (fs::exists(model, ec)) {
    return MakeError("model ", model, " is not a directory (expected a checkpoint directory ",
                     "with config.json, or a Hugging Face id ORG/NAME)");
  }
  if (IsHubId(model)) return ResolveHubId(model);
  return MakeError("no such directory: ", model,
                   " (expected a checkpoint directory with config.json, or a Hugging Face id "
                   "ORG/NAME)");
}

}  // namespace gs
