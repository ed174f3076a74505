// Shared by the image-input server tests: a model directory made of the transformers golden
// vision checkpoint (tests/data/golden_vision/model/bf16: random Gemma 4 text model + vision
// tower; boi 500, image 501, eoi 502) plus the demo tokenizer with those three ids turned into the
// image control tokens and the real Gemma 4 chat template; a server over it; data: URLs; and the
// single-request oracle: gs::Generate on its own CPU runner with the image encoded directly
// (the path the golden tests check against transformers).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "golden/vision_golden_util.h"
#include "model/vision_weights.h"
#include "server/server_test_util.h"
#include "tools/demo_tokenizer.h"
#include "tools/embedded_files.h"
#include "util/mapped_file.h"
#include "vision/image_decode.h"

namespace gs::test {

inline std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string Base64(const std::vector<uint8_t>& b) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < b.size(); i += 3) {
    const uint32_t n = (uint32_t{b[i]} << 16) | (i + 1 < b.size() ? uint32_t{b[i + 1]} << 8 : 0) |
                       (i + 2 < b.size() ? uint32_t{b[i + 2]} : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < b.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < b.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

inline std::string DataUrl(const std::vector<uint8_t>& bytes, const std::string& type = "png") {
  return "data:image/" + type + ";base64," + Base64(bytes);
}

inline std::string GoldenImage(const std::string& name) {
  return golden::VisionRoot() + "/images/" + name;
}

class VisionModelDir {
 public:
  static VisionModelDir& Get() {
    static VisionModelDir d;
    return d;
  }
  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }

  // Greedy tokens (and their logprobs) of `prompt` with `images` (file, first <|image|> index) at
  // budget `max_soft_tokens`, through gs::Generate on a fresh single-sequence CPU runner.
  std::vector<int32_t> Oracle(const std::vector<int32_t>& prompt,
                              const std::vector<std::pair<std::string, int>>& images,
                              int max_soft_tokens, int max_tokens) {
    std::lock_guard<std::mutex> lock(mu_);
    CpuRunner runner(config_, weights_, KvSpecForSingleSequence(1024), CpuRunnerOptions{2, 0.0f});
    auto vision = BindVisionWeights(config_, weights_.store);
    EXPECT_TRUE(vision.ok()) << vision.error().message;
    EXPECT_TRUE(runner.AttachVision(std::move(*vision)).ok());
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    ImageProcessorOptions po;
    po.patch_size = config_.vision->patch_size;
    po.pooling_kernel_size = config_.vision->pooling_kernel_size;
    po.max_soft_tokens = max_soft_tokens;
    for (const auto& [file, first] : images) {
      auto rgb = LoadImageFile(file);
      EXPECT_TRUE(rgb.ok()) << rgb.error().message;
      auto processed = PreprocessImage(*rgb, po);
      EXPECT_TRUE(processed.ok()) << processed.error().message;
      auto emb = runner.EncodeImage(*processed);
      EXPECT_TRUE(emb.ok()) << emb.error().message;
      o.images.push_back({first, processed->num_soft_tokens, std::move(*emb)});
    }
    auto r = Generate(runner, prompt, o);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }

 private:
  VisionModelDir() {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("gs_vision_server_" + std::to_string(::getpid()));
    path_ = dir.string();
    fs::create_directories(dir);
    const fs::path src = fs::path(golden::VisionRoot()) / "model" / "bf16";
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) {
      fs::copy_file(src / f, dir / f, fs::copy_options::overwrite_existing);
    }
    EXPECT_TRUE(WriteTextFile((dir / "tokenizer.json").string(), TokenizerJson().dump()).ok());
    EXPECT_TRUE(WriteTextFile((dir / "tokenizer_config.json").string(),
                              DemoTokenizerConfig().dump(2)).ok());
    EXPECT_TRUE(WriteTextFile((dir / "chat_template.jinja").string(), Gemma4ChatTemplate()).ok());
    auto c = LoadModelConfig(path_);
    EXPECT_TRUE(c.ok()) << c.error().message;
    config_ = *c;
    auto w = LoadGemma4Weights(config_, path_);
    EXPECT_TRUE(w.ok()) << w.error().message;
    weights_ = *w;
  }
  ~VisionModelDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  // The demo tokenizer (vocab 512) with ids 500..502 as <|image>, <|image|>, <image|>: the words
  // that held those ids, and the merges that lead to them, are dropped.
  static nlohmann::json TokenizerJson() {
    nlohmann::json t = DemoTokenizerJson(512);
    nlohmann::json& vocab = t["model"]["vocab"];
    const std::vector<std::pair<int, std::string>> image_tokens = {
        {500, "<|image>"}, {501, "<|image|>"}, {502, "<image|>"}};
    for (auto it = vocab.begin(); it != vocab.end();) {
      const int id = it.value().get<int>();
      it = (id >= 500 && id <= 502) ? vocab.erase(it) : std::next(it);
    }
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& m : t["model"]["merges"]) {
      const std::string a = m[0], b = m[1];
      if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
    }
    t["model"]["merges"] = merges;
    for (const auto& [id, text] : image_tokens) {
      vocab[text] = id;
      t["added_tokens"].push_back({{"id", id}, {"content", text}, {"single_word", false},
                                   {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                   {"special", true}});
    }
    return t;
  }

  std::string path_;
  ModelConfig config_;
  Gemma4Weights weights_;
  std::mutex mu_;
};

struct VisionServerOptions {
  int max_num_batched_tokens = 512;
  int max_num_seqs = 4;
  bool prefix_caching = true;
  int kv_tokens = 4096;
  bool with_vision = true;
  server::ImageInputOptions images;
};

inline std::unique_ptr<server::ModelServer> StartVisionServer(const VisionServerOptions& t = {}) {
  VisionModelDir& m = VisionModelDir::Get();
  server::ModelServerOptions o;
  o.model_dir = m.path();
  o.served_model_names = {"vision"};
  o.engine.max_num_seqs = t.max_num_seqs;
  o.engine.max_num_batched_tokens = t.max_num_batched_tokens;
  o.engine.enable_prefix_caching = t.prefix_caching;
  o.http.host = "127.0.0.1";
  o.http.port = 0;
  o.http.max_body_bytes = 8u << 20;
  o.images = t.images;
  auto w = LoadGemma4Weights(m.config(), m.path());
  EXPECT_TRUE(w.ok());
  const KvCacheSpec spec = EngineKvSpec(o.engine, (t.kv_tokens + 15) / 16, 8);
  auto runner = std::make_unique<CpuRunner>(m.config(), *w, spec, CpuRunnerOptions{2, 0.0f});
  if (t.with_vision) {
    auto vision = BindVisionWeights(m.config(), w->store);
    EXPECT_TRUE(vision.ok());
    EXPECT_TRUE(runner->AttachVision(std::move(*vision)).ok());
  }
  auto s = server::ModelServer::Create(std::move(runner), std::move(o));
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return nullptr;
  }
  auto port = (*s)->Start();
  if (!port) {
    ADD_FAILURE() << port.error().message;
    return nullptr;
  }
  return std::move(*s);
}

// A one-message chat request: `text` then the image (a URL) in one user turn.
inline Json ImageChat(const std::string& text, const std::string& url, int max_tokens = 6,
                      int max_soft_tokens = 70) {
  Json content = Json::array();
  content.push_back({{"type", "text"}, {"text", text}});
  content.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
  Json body = {{"model", "vision"},
               {"messages", Json::array({{{"role", "user"}, {"content", content}}})},
               {"max_tokens", max_tokens},
               {"temperature", 0},
               {"ignore_eos", true},
               {"logprobs", true},
               {"return_token_ids", true},
               {"mm_processor_kwargs", {{"max_soft_tokens", max_soft_tokens}}}};
  return body;
}

inline int Port(server::ModelServer& s) {
  return std::stoi(s.url().substr(s.url().rfind(':') + 1));
}

}  // namespace gs::test
