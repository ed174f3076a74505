// `gemmaserve convert` and `gemmaserve quantize` stream: on synthetic checkpoints several times
// larger than kMaxRssBytes (few layers, many experts), the real binary, run as a child
// process, never has a peak RSS (wait4 ru_maxrss, which counts mapped checkpoint pages) above
// kMaxRssBytes, and its output is still right: copied tensors equal the input bytes, scales are
// the reciprocals, attention equals an independent dequantization, quantized experts dequantize
// back to the BF16 input within NVFP4 rounding.
//
// GS_TOOLS_MEMORY_BINARY=/path/to/gemmaserve runs another build (e.g. an older one) instead of
// GS_BINARY against the same bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/quant_config.h"
#include "model/safetensors.h"
#include "tools/synthetic_checkpoint.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxRssBytes = uint64_t{256} << 20;
constexpr uint64_t kMinInputBytes = 4 * kMaxRssBytes;  // so that the old, mapped-it-all code fails

// A text-only Gemma 4 MoE with few layers (sliding, full, ...) and many experts: expert matrices
// of a few hundred KB like the real ones, and about as many tensors per GB as the real checkpoint
// (each read of a small tensor maps up to 64 KiB, so a per-tensor leak shows).
constexpr int64_t kHidden = 1024, kMoeInter = 512;
std::string TestConfig(int num_layers, int num_experts) {
  nlohmann::json types = nlohmann::json::array();
  for (int l = 0; l < num_layers; ++l) types.push_back(l % 2 ? "full_attention" : "sliding_attention");
  const nlohmann::json c = {
      {"architectures", {"Gemma4ForCausalLM"}},
      {"model_type", "gemma4_text"},
      {"hidden_size", kHidden},
      {"num_hidden_layers", num_layers},
      {"layer_types", types},
      {"num_attention_heads", 8},
      {"num_key_value_heads", 2},
      {"head_dim", 128},
      {"global_head_dim", 256},
      {"num_global_key_value_heads", 1},
      {"attention_k_eq_v", true},
      {"sliding_window", 512},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"full_attention",
         {{"rope_type", "proportional"}, {"rope_theta", 1000000.0}, {"partial_rotary_factor", 0.25}}}}},
      {"intermediate_size", 1024},
      {"enable_moe_block", true},
      {"num_experts", num_experts},
      {"top_k_experts", 8},
      {"moe_intermediate_size", kMoeInter},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"final_logit_softcapping", 30.0},
      {"rms_norm_eps", 1e-6},
      {"vocab_size", 65536},
      {"max_position_embeddings", 4096},
      {"tie_word_embeddings", true},
      {"hidden_size_per_layer_input", 0},
      {"num_kv_shared_layers", 0},
  };
  return c.dump(2);
}

struct ChildResult {
  int exit_code = -1;
  uint64_t peak_rss_bytes = 0;
  std::string log;
};

// Runs the binary with `args`, its output into `log_path`; peak RSS from wait4.
ChildResult RunChild(const std::vector<std::string>& args, const std::string& log_path) {
  const char* override_binary = std::getenv("GS_TOOLS_MEMORY_BINARY");
  const std::string binary = override_binary && *override_binary ? override_binary : GS_BINARY;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ChildResult r;
  int status = 0;
  struct rusage usage {};
  if (pid < 0 || ::wait4(pid, &status, 0, &usage) != pid) return r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.peak_rss_bytes = static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux: kilobytes
  auto log = ReadTextFile(log_path);
  if (log.ok()) r.log = *log;
  return r;
}

uint64_t DirectoryBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

float F32(const TensorView& v) {
  float x;
  std::memcpy(&x, v.data, 4);
  return x;
}

double Bf16At(const uint8_t* p, size_t i) {
  uint32_t bits = static_cast<uint32_t>(p[2 * i]) | static_cast<uint32_t>(p[2 * i + 1]) << 8;
  bits <<= 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// E4M3 (OCP FP8, bias 7, no infinities) decoded from its definition.
double E4m3(uint8_t b) {
  const int e = (b >> 3) & 0xf, m = b & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return b & 0x80 ? -mag : mag;
}

double E2m1(uint8_t code) {
  static const double kMag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (code & 8 ? -1 : 1) * kMag[code & 7];
}

bool SameBytes(const TensorView* a, const TensorView* b) {
  return a && b && a->nbytes == b->nbytes && std::memcmp(a->data, b->data, a->nbytes) == 0;
}

class ToolsMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gs_tools_memory_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes a synthetic checkpoint of `format` and returns its directory.
  fs::path MakeInput(SyntheticFormat format, int num_layers, int num_experts, const std::string& name) {
    const fs::path config = root_ / (name + "_config.json");
    EXPECT_TRUE(WriteTextFile(config.string(), TestConfig(num_layers, num_experts)).ok());
    SyntheticCheckpointOptions o;
    o.config_path = config.string();
    o.output_dir = (root_ / name).string();
    o.format = format;
    o.max_shard_bytes = 600'000'000;  // several shards and an index, as real checkpoints have
    auto st = WriteSyntheticCheckpoint(o);
    EXPECT_TRUE(st.ok()) << st.error().message;
    return root_ / name;
  }

  // Runs the tool and checks the bound; returns false (after a failure) if it did not succeed.
  bool RunBounded(const std::vector<std::string>& args, const fs::path& input) {
    const uint64_t in_bytes = DirectoryBytes(input);
    EXPECT_GE(in_bytes, kMinInputBytes) << "the input must dwarf the bound for the test to mean anything";
    // The binary's own resident size (shared libraries: a CUDA build maps cuBLAS) is measured
    // by `<tool> --help`; the bound is on what the tool adds to it.
    const ChildResult base = RunChild({args[0], "--help"}, (root_ / "help.log").string());
    const ChildResult r = RunChild(args, (root_ / "child.log").string());
    EXPECT_EQ(r.exit_code, 0) << r.log;
    const uint64_t added = r.peak_rss_bytes - std::min(r.peak_rss_bytes, base.peak_rss_bytes);
    std::printf("[ tools-memory ] gemmaserve %s: input %.0f MiB, peak RSS %.1f MiB = %.1f MiB of "
                "the binary at rest + %.1f MiB (bound %.0f MiB)\n",
                args[0].c_str(), in_bytes / 1048576.0, r.peak_rss_bytes / 1048576.0,
                base.peak_rss_bytes / 1048576.0, added / 1048576.0, kMaxRssBytes / 1048576.0);
    EXPECT_LE(added, kMaxRssBytes)
        << "gemmaserve " << args[0] << " kept " << added / 1048576 << " MiB resident (beyond "
        << base.peak_rss_bytes / 1048576 << " MiB at rest) for a " << in_bytes / 1048576
        << " MiB checkpoint: it does not stream";
    return r.exit_code == 0;
  }

  fs::path root_;
};

// Resident pages of this process (/proc/self/statm, field 2).
int64_t ResidentPages() {
  auto statm = ReadTextFile("/proc/self/statm");
  if (!statm.ok()) return -1;
  long long size = 0, resident = 0;
  return std::sscanf(statm->c_str(), "%lld %lld", &size, &resident) == 2 ? resident : -1;
}

// The mechanism under the tools: released pages leave the RSS and read back unchanged, and only
// the requested range (rounded out to pages) is released.
TEST_F(ToolsMemory, ReleasePagesDropsResidencyKeepsContents) {
  constexpr size_t kBytes = size_t{64} << 20;
  std::string text(kBytes, '\0');
  for (size_t i = 0; i < kBytes; ++i) text[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::string path = (root_ / "pages.bin").string();
  ASSERT_TRUE(WriteTextFile(path, text).ok());
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.error().message;
  const int64_t page = ::sysconf(_SC_PAGESIZE), pages = static_cast<int64_t>(kBytes) / page;
  const int64_t before = ResidentPages();
  EXPECT_EQ(std::memcmp(file->data(), text.data(), kBytes), 0);
  const int64_t touched = ResidentPages();
  EXPECT_GE(touched - before, pages * 9 / 10) << "reading a mapping makes it resident";
  file->ReleasePages(kBytes / 2 + 1, kBytes);  // the second half, from an unaligned offset
  const int64_t half = ResidentPages();
  EXPECT_LE(touched - half, pages / 2 + 16);
  EXPECT_GE(touched - half, pages / 2 - 16);
  file->ReleasePages();
  EXPECT_LE(ResidentPages() - before, pages / 10);
  EXPECT_EQ(std::memcmp(file->data(), text.data(), kBytes), 0) << "released pages read back";
}

TEST_F(ToolsMemory, ConvertStreamsCompressedTensors) {
  const fs::path in = MakeInput(SyntheticFormat::kCompressedTensors, 4, 320, "ct");
  const fs::path out = root_ / "converted";
  ASSERT_TRUE(RunBounded({"convert", "--from", in.string(), "--to", out.string(),
                          "--max-shard-size", "0.5"}, in));

  auto ct = TensorStore::OpenDirectory(in.string());
  auto mo = TensorStore::OpenDirectory(out.string());
  ASSERT_TRUE(ct.ok() && mo.ok());
  auto quant = LoadQuantizationInfo(out.string());
  ASSERT_TRUE(quant.ok()) << quant.error().message;
  EXPECT_EQ(quant->method, QuantMethod::kModelopt);
  EXPECT_TRUE(SameBytes(ct->Find("model.embed_tokens.weight"), mo->Find("model.embed_tokens.weight")));
  for (const std::string m : {"model.layers.0.experts.0.gate_proj", "model.layers.3.experts.319.down_proj",
                              "model.layers.1.mlp.up_proj"}) {
    EXPECT_TRUE(SameBytes(ct->Find(m + ".weight_packed"), mo->Find(m + ".weight"))) << m;
    EXPECT_TRUE(SameBytes(ct->Find(m + ".weight_scale"), mo->Find(m + ".weight_scale"))) << m;
    ASSERT_TRUE(mo->Find(m + ".weight_scale_2") && mo->Find(m + ".input_scale")) << m;
    EXPECT_EQ(F32(*mo->Find(m + ".weight_scale_2")), 1.0f / F32(*ct->Find(m + ".weight_global_scale")));
    EXPECT_EQ(F32(*mo->Find(m + ".input_scale")), 1.0f / F32(*ct->Find(m + ".input_global_scale")));
  }
  // The global layer's q_proj, dequantized to BF16: e2m1 × e4m3 ÷ divisor, rounded once.
  const std::string q = "model.layers.1.self_attn.q_proj";
  const TensorView* codes = ct->Find(q + ".weight_packed");
  const TensorView* scales = ct->Find(q + ".weight_scale");
  const TensorView* got = mo->Find(q + ".weight");
  ASSERT_TRUE(codes && scales && got);
  const int64_t rows = codes->shape[0], cols = codes->shape[1] * 2;
  ASSERT_EQ(got->shape, (std::vector<int64_t>{rows, cols}));
  const double divisor = F32(*ct->Find(q + ".weight_global_scale"));
  int64_t mismatches = 0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    const uint8_t byte = codes->data[i / 2];
    const double want = E2m1(i % 2 ? byte >> 4 : byte & 0xf) * E4m3(scales->data[i / 16]) / divisor;
    const double have = Bf16At(got->data, static_cast<size_t>(i));
    mismatches += std::fabs(have - want) > std::fabs(want) * (1.0 / 256);  // bf16: 8 bits
  }
  EXPECT_EQ(mismatches, 0) << q;
  EXPECT_EQ(mo->Find(q + ".weight_scale"), nullptr);
}

TEST_F(ToolsMemory, QuantizeStreamsBf16) {
  constexpr int kExperts = 90;
  const fs::path in = MakeInput(SyntheticFormat::kBf16, 4, kExperts, "bf16");
  const fs::path out = root_ / "quantized";
  ASSERT_TRUE(RunBounded({"quantize", "--from", in.string(), "--to", out.string()}, in));

  auto bf = TensorStore::OpenDirectory(in.string());
  auto mo = TensorStore::OpenDirectory(out.string());
  ASSERT_TRUE(bf.ok() && mo.ok());
  auto quant = LoadQuantizationInfo(out.string());
  ASSERT_TRUE(quant.ok()) << quant.error().message;
  EXPECT_EQ(quant->quant_algo, "W4A16_NVFP4");
  for (const std::string copied : {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                                   "model.layers.0.router.proj.weight"}) {
    EXPECT_TRUE(SameBytes(bf->Find(copied), mo->Find(copied))) << copied;
  }
  // Expert 0's gate (rows [0, I) of gate_up_proj[0]) and the last expert's down_proj.
  const int64_t h = kHidden, inter = kMoeInter;
  struct Sample {
    std::string module, fused;
    size_t offset_elements;
    int64_t rows, cols;
  };
  const std::vector<Sample> samples = {
      {"model.layers.0.experts.0.gate_proj", "model.layers.0.experts.gate_up_proj", 0, inter, h},
      {"model.layers.3.experts.89.up_proj", "model.layers.3.experts.gate_up_proj",
       static_cast<size_t>((kExperts - 1) * 2 * inter * h + inter * h), inter, h},
      {"model.layers.3.experts.89.down_proj", "model.layers.3.experts.down_proj",
       static_cast<size_t>((kExperts - 1) * h * inter), h, inter}};
  for (const Sample& s : samples) {
    const TensorView* src = bf->Find(s.fused);
    const TensorView* codes = mo->Find(s.module + ".weight");
    const TensorView* scales = mo->Find(s.module + ".weight_scale");
    const TensorView* scale2 = mo->Find(s.module + ".weight_scale_2");
    ASSERT_TRUE(src && codes && scales && scale2) << s.module;
    ASSERT_EQ(codes->shape, (std::vector<int64_t>{s.rows, s.cols / 2})) << s.module;
    const double global = F32(*scale2);
    int64_t bad_values = 0, bad_scales = 0;
    double err2 = 0, ref2 = 0;
    for (int64_t b = 0; b < s.rows * s.cols / 16; ++b) {
      const double block_scale = E4m3(scales->data[b]) * global;
      double amax = 0;
      for (int64_t k = 0; k < 16; ++k) {
        const int64_t i = b * 16 + k;
        const double x = Bf16At(src->data, s.offset_elements + static_cast<size_t>(i));
        const uint8_t byte = codes->data[i / 2];
        const double y = E2m1(i % 2 ? byte >> 4 : byte & 0xf) * block_scale;
        amax = std::max(amax, std::fabs(x));
        // Half the widest E2M1 gap (2, between 4 and 6), plus clipping after the scale rounds down.
        bad_values += std::fabs(y - x) > 1.01 * block_scale + 1e-12;
        err2 += (y - x) * (y - x);
        ref2 += x * x;
      }
      // The block scale is amax / 6, within E4M3 rounding (3 mantissa bits) of the scale.
      bad_scales += std::fabs(block_scale * 6 - amax) > amax / 16 + 1e-12;
    }
    EXPECT_EQ(bad_values, 0) << s.module;
    EXPECT_EQ(bad_scales, 0) << s.module;
    EXPECT_LT(std::sqrt(err2 / ref2), 0.15) << s.module;
  }
}

}  // namespace
}  // namespace gs
