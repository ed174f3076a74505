// Checkpoint directories: sharded model.safetensors.index.json (happy path and every kind of
// inconsistency), directories without an index, and --model resolution against a fake Hugging
// Face cache laid out as huggingface_hub lays it out (models--ORG--NAME/{refs,snapshots}).
#include "model/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "gs_checkpoint_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* var : kVars) {
      const char* v = getenv(var);
      saved_.push_back(v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(var);
    }
  }
  void TearDown() override {
    for (size_t i = 0; i < std::size(kVars); ++i) {
      if (saved_[i]) {
        setenv(kVars[i], saved_[i]->c_str(), 1);
      } else {
        unsetenv(kVars[i]);
      }
    }
    fs::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  static void WriteText(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << path;
  }

  // A shard holding one U8 tensor [2] per name, with bytes derived from the name.
  static void WriteShard(const std::string& path, const std::vector<std::string>& names) {
    std::vector<TensorToWrite> tensors;
    for (const std::string& n : names) {
      tensors.push_back({n, DType::kU8, {2}, {static_cast<uint8_t>(n[0]), 7}});
    }
    const Status s = WriteSafetensors(path, tensors);
    ASSERT_TRUE(s.ok()) << s.error().message;
  }

  // model.safetensors.index.json from (tensor, shard) pairs.
  void WriteIndex(const std::vector<std::pair<std::string, std::string>>& map) {
    std::string text = R"({"metadata": {"total_size": 6}, "weight_map": {)";
    for (size_t i = 0; i < map.size(); ++i) {
      text += (i ? ", \"" : "\"") + map[i].first + "\": \"" + map[i].second + "\"";
    }
    WriteText(Path("model.safetensors.index.json"), text + "}}");
  }

  // Expects OpenDirectory(dir_) to fail with a message containing every part.
  void ExpectOpenError(const std::vector<std::string>& parts) {
    auto store = TensorStore::OpenDirectory(dir_);
    ASSERT_FALSE(store.ok()) << "accepted a bad checkpoint; expected " << parts[0];
    for (const std::string& part : parts) {
      EXPECT_NE(store.error().message.find(part), std::string::npos)
          << "missing '" << part << "' in: " << store.error().message;
    }
  }

  static constexpr const char* kVars[] = {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"};
  std::vector<std::optional<std::string>> saved_;
  std::string dir_;
};

TEST_F(CheckpointTest, ShardedIndexHappyPath) {
  WriteShard(Path("model-00001-of-00002.safetensors"), {"alpha", "beta"});
  WriteShard(Path("model-00002-of-00002.safetensors"), {"gamma"});
  WriteIndex({{"alpha", "model-00001-of-00002.safetensors"},
              {"beta", "model-00001-of-00002.safetensors"},
              {"gamma", "model-00002-of-00002.safetensors"}});
  auto store = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->all().size(), 3u);
  EXPECT_EQ(store->total_bytes(), 6u);
  const TensorView* gamma = store->Find("gamma");
  ASSERT_NE(gamma, nullptr);
  EXPECT_EQ(gamma->file, Path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(gamma->data[0], 'g');
  EXPECT_EQ(gamma->data[1], 7);
  EXPECT_EQ(store->Find("alpha")->file, Path("model-00001-of-00002.safetensors"));
  EXPECT_EQ(store->Find("delta"), nullptr);

  // Views stay valid when the store is moved (they point into heap-owned files).
  TensorStore moved = std::move(*store);
  EXPECT_EQ(moved.Find("beta")->data[0], 'b');
}

TEST_F(CheckpointTest, MissingShard) {
  WriteShard(Path("model-00001-of-00002.safetensors"), {"alpha"});
  WriteIndex({{"alpha", "model-00001-of-00002.safetensors"},
              {"beta", "model-00002-of-00002.safetensors"}});
  ExpectOpenError({"model-00002-of-00002.safetensors", "cannot open"});
}

TEST_F(CheckpointTest, TensorMissingFromItsShard) {
  WriteShard(Path("a.safetensors"), {"alpha"});
  WriteShard(Path("b.safetensors"), {"beta"});
  WriteIndex({{"alpha", "a.safetensors"}, {"beta", "b.safetensors"}, {"gamma", "a.safetensors"}});
  ExpectOpenError({"'gamma'", "a.safetensors", "not in any shard"});
}

TEST_F(CheckpointTest, TensorInADifferentShardThanIndexed) {
  WriteShard(Path("a.safetensors"), {"alpha"});
  WriteShard(Path("b.safetensors"), {"beta"});
  WriteIndex({{"alpha", "b.safetensors"}, {"beta", "a.safetensors"}});
  ExpectOpenError(
      {"'alpha'", "should be in " + Path("b.safetensors"), "but is in " + Path("a.safetensors")});
}

TEST_F(CheckpointTest, ShardNameMustNotLeaveTheDirectory) {
  // The checkpoint is a subdirectory, so "../evil.safetensors" exists and would open.
  dir_ = Path("ckpt");
  fs::create_directories(dir_);
  WriteShard(Path("a.safetensors"), {"alpha"});
  WriteShard(Path("../evil.safetensors"), {"beta"});
  WriteIndex({{"alpha", "a.safetensors"}, {"beta", "../evil.safetensors"}});
  ExpectOpenError({"'beta'", "../evil.safetensors", "plain file name"});
  dir_ = fs::path(dir_).parent_path().string();  // TearDown removes the whole temp dir

  WriteIndex({{"alpha", "a.safetensors"}, {"beta", "sub/b.safetensors"}});
  ExpectOpenError({"'beta'", "sub/b.safetensors", "plain file name"});
  WriteIndex({{"alpha", "/etc/passwd"}});
  ExpectOpenError({"'alpha'", "plain file name"});
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShards) {
  WriteShard(Path("a.safetensors"), {"alpha", "beta"});
  WriteShard(Path("b.safetensors"), {"beta"});
  WriteIndex({{"alpha", "a.safetensors"}, {"beta", "a.safetensors"}});
  // b.safetensors is not named by the index, so it is never opened: no duplicate.
  EXPECT_TRUE(TensorStore::OpenDirectory(dir_).ok());
  WriteShard(Path("b.safetensors"), {"beta", "gamma"});
  WriteIndex({{"alpha", "a.safetensors"}, {"beta", "a.safetensors"}, {"gamma", "b.safetensors"}});
  ExpectOpenError({"'beta'", "both", Path("a.safetensors"), Path("b.safetensors")});
}

TEST_F(CheckpointTest, TensorAbsentFromIndexIsAnError) {
  WriteShard(Path("a.safetensors"), {"alpha", "stray"});
  WriteIndex({{"alpha", "a.safetensors"}});
  ExpectOpenError({"'stray'", Path("a.safetensors"), "not listed"});
}

TEST_F(CheckpointTest, MalformedIndex) {
  WriteShard(Path("a.safetensors"), {"alpha"});
  const std::string index = Path("model.safetensors.index.json");
  WriteText(index, R"({"weight_map": {"alpha": 3}})");
  ExpectOpenError({index, "'alpha'", "must be a string"});
  WriteText(index, R"({"metadata": {}})");
  ExpectOpenError({index, "weight_map"});
  WriteText(index, R"({"weight_map": {"alpha": "a.safetensors")");
  ExpectOpenError({index, "parse error"});
  WriteText(index, std::string(5000, '[') + std::string(5000, ']'));
  ExpectOpenError({index, "nested deeper"});
  WriteText(index, R"({"weight_map": {}})");
  ExpectOpenError({index, "no tensors"});
}

TEST_F(CheckpointTest, DirectoryWithoutIndex) {
  ExpectOpenError({"no model.safetensors.index.json", dir_});
  // Without model.safetensors: every *.safetensors, in name order.
  WriteShard(Path("b.safetensors"), {"beta"});
  WriteShard(Path("a.safetensors"), {"alpha"});
  WriteText(Path("notes.txt"), "not a shard");
  auto all = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->all().size(), 2u);
  // model.safetensors, when present, is used alone.
  WriteShard(Path("model.safetensors"), {"gamma"});
  auto single = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(single.ok()) << single.error().message;
  ASSERT_EQ(single->all().size(), 1u);
  EXPECT_NE(single->Find("gamma"), nullptr);

  auto missing = TensorStore::OpenDirectory(Path("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(Path("nope")), std::string::npos);
}

TEST_F(CheckpointTest, OpenFilesRejectsDuplicates) {
  WriteShard(Path("a.safetensors"), {"alpha"});
  auto twice = TensorStore::OpenFiles({Path("a.safetensors"), Path("a.safetensors")});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("'alpha'"), std::string::npos);
}

TEST_F(CheckpointTest, ResolveLocalDirectory) {
  WriteText(Path("ckpt/config.json"), "{}");
  auto ok = ResolveModelPath(Path("ckpt"));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(*ok, Path("ckpt"));

  fs::create_directories(Path("empty"));
  auto no_config = ResolveModelPath(Path("empty"));
  ASSERT_FALSE(no_config.ok());
  EXPECT_NE(no_config.error().message.find(Path("empty")), std::string::npos);
  EXPECT_NE(no_config.error().message.find("config.json"), std::string::npos);

  auto missing = ResolveModelPath(Path("does/not/exist"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("no such directory"), std::string::npos);
  EXPECT_NE(missing.error().message.find(Path("does/not/exist")), std::string::npos);

  WriteText(Path("file.json"), "{}");
  auto file = ResolveModelPath(Path("file.json"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message.find("not a directory"), std::string::npos);
}

// A snapshot directory with config.json and the given modification time (seconds from now).
void MakeSnapshot(const fs::path& dir, int age_seconds) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << "{}";
  fs::last_write_time(dir, fs::file_time_type::clock::now() - std::chrono::seconds(age_seconds));
}

TEST_F(CheckpointTest, ResolveHubIdPrefersRefsMainThenNewest) {
  setenv("HF_HOME", Path("hf").c_str(), 1);
  const fs::path repo = fs::path(Path("hf")) / "hub" / "models--google--gemma-4-x";
  MakeSnapshot(repo / "snapshots" / "aaa111", 100);
  MakeSnapshot(repo / "snapshots" / "bbb222", 10);        // newer
  fs::create_directories(repo / "snapshots" / "ccc333");  // newest, but no config.json
  WriteText((repo / "refs" / "main").string(), "aaa111\n");

  auto by_ref = ResolveModelPath("google/gemma-4-x");
  ASSERT_TRUE(by_ref.ok()) << by_ref.error().message;
  EXPECT_EQ(*by_ref, (repo / "snapshots" / "aaa111").string());

  fs::remove(repo / "refs" / "main");
  auto newest = ResolveModelPath("google/gemma-4-x");
  ASSERT_TRUE(newest.ok()) << newest.error().message;
  EXPECT_EQ(*newest, (repo / "snapshots" / "bbb222").string());

  // refs/main naming a snapshot that is not there: fall back to the newest.
  WriteText((repo / "refs" / "main").string(), "deadbeef");
  auto fallback = ResolveModelPath("google/gemma-4-x");
  ASSERT_TRUE(fallback.ok()) << fallback.error().message;
  EXPECT_EQ(*fallback, (repo / "snapshots" / "bbb222").string());
}

TEST_F(CheckpointTest, HubCacheEnvOverridesHfHome) {
  setenv("HF_HOME", Path("hf").c_str(), 1);
  setenv("HF_HUB_CACHE", Path("other").c_str(), 1);
  MakeSnapshot(fs::path(Path("hf")) / "hub" / "models--o--n" / "snapshots" / "r1", 5);
  MakeSnapshot(fs::path(Path("other")) / "models--o--n" / "snapshots" / "r2", 5);
  auto got = ResolveModelPath("o/n");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, (fs::path(Path("other")) / "models--o--n" / "snapshots" / "r2").string());
}

TEST_F(CheckpointTest, MissingHubModelListsPathsTried) {
  setenv("HF_HOME", Path("hf").c_str(), 1);
  const fs::path repo = fs::path(Path("hf")) / "hub" / "models--org--missing";
  auto missing = ResolveModelPath("org/missing");
  ASSERT_FALSE(missing.ok());
  const std::string& msg = missing.error().message;
  EXPECT_NE(msg.find("org/missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find((repo / "snapshots").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("huggingface-cli download org/missing"), std::string::npos) << msg;

  // With a refs/main whose snapshot has no config.json, that path is listed too.
  fs::create_directories(repo / "snapshots" / "r1");
  WriteText((repo / "refs" / "main").string(), "r1");
  auto partial = ResolveModelPath("org/missing");
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.error().message.find((repo / "snapshots" / "r1" / "config.json").string()),
            std::string::npos)
      << partial.error().message;
}

}  // namespace
}  // namespace gs
