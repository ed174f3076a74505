// gemmaserve bench: offline throughput on the GPU. With --load-format dummy it builds the config's
// real shapes with random weights generated on the GPU (no checkpoint), then measures decode at
// several batch sizes (prompts of --prompt-len, --gen-tokens steps each) and prefill of long
// prompts, and prints achieved weight bandwidth against a device-to-device copy measured in the
// same run. With --vision it measures the vision encoder instead (cli/bench_vision.h). --sampling
// picks how decode steps choose tokens (greedy on the GPU, sampled on the GPU, or sampled on the
// host from copied logits, as the engine did before GPU sampling).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <sstream>
#include <string>

#include "cli/bench_vision.h"
#include "cli/commands.h"
#include "cli/int_list.h"
#include "cli/model_loading.h"
#include "model/config.h"
#include "model/weights.h"
#include "util/mapped_file.h"
#include "runtime/sampling.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace gs::cli {
namespace {

Expected<ModelConfig> LoadConfigPath(const std::string& path) {
  if (std::filesystem::is_directory(path)) return LoadModelConfig(path);
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return ParseModelConfig(text, path);
}

struct BenchOptions {
  std::vector<int> batch_sizes, prefill_lens;
  int prompt_len = 128, gen_tokens = 256;
  // Eager decode steps per batch for the graphs-vs-eager column: -1 = as many as the graph run
  // (the same contexts, so attention costs the same), 0 = skip.
  int eager_steps = -1;
  bool enforce_eager = false;
  std::vector<std::string> kv_dtypes = {"bf16"};  // one full run each, then a comparison
  std::string sampling = "greedy";  // greedy | gpu | host
};

#if GS_HAVE_CUDA

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Deterministic pseudo-random token ids in [3, vocab): the values do not matter for speed, but
// real-looking ids route to varied experts.
int32_t TokenId(uint64_t i, int vocab) {
  uint64_t z = i * 0x9e3779b97f4a7c15ull + 12345;
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
  return static_cast<int32_t>(3 + (z >> 33) % static_cast<uint64_t>(vocab - 3));
}

// Blocks [first_block + seq·per_seq, … + per_seq) belong to sequence `seq`.
BatchSequence Sequence(int seq, int first, int count, int start, int per_seq,
                       int first_block = 0) {
  BatchSequence s;
  s.slot = seq;
  s.first_token = first;
  s.num_tokens = count;
  s.start_position = start;
  s.block_table.resize(static_cast<size_t>(per_seq));
  std::iota(s.block_table.begin(), s.block_table.end(), first_block + seq * per_seq);
  return s;
}

// Gemma 4's generation_config sampling (T 1, top_k 64, top_p 0.95), seeded per sequence.
SamplingParams BenchSampling(int seq) {
  SamplingParams p;
  p.temperature = 1.0;
  p.top_k = 64;
  p.top_p = 0.95;
  p.seed = static_cast<uint64_t>(seq);
  return p;
}

// One decode step's tokens: ForwardGreedy, ForwardSample (GPU sampling), or Forward + the host
// Sampler per row (logits copied to the host).
Status DecodeStep(CudaRunner& runner, const Batch& b, const std::string& mode, int step,
                  std::vector<int32_t>* next) {
  if (mode == "greedy") return runner.ForwardGreedy(b, next);
  const size_t rows = b.logits_indices.size();
  if (mode == "gpu") {
    std::vector<GpuSamplingParams> per_row(rows);
    for (size_t r = 0; r < rows; ++r) {
      const SamplingParams p = BenchSampling(static_cast<int>(r));
      per_row[r] = {static_cast<float>(p.temperature), p.top_k, static_cast<float>(p.top_p),
                    static_cast<float>(p.min_p), *p.seed, static_cast<uint64_t>(step)};
    }
    return runner.ForwardSample(b, per_row, next, nullptr, nullptr);
  }
  std::vector<float> logits;
  GS_RETURN_IF_ERROR(runner.Forward(b, &logits));
  const size_t vocab = static_cast<size_t>(runner.config().vocab_size);
  next->resize(rows);
  for (size_t r = 0; r < rows; ++r) {
    SamplingParams p = BenchSampling(static_cast<int>(r));
    *p.seed += static_cast<uint64_t>(step) << 20;
    (*next)[r] = Sampler(p).Sample(std::span<const float>(logits.data() + r * vocab, vocab));
  }
  return Ok();
}

// Decode steps of the eager (no CUDA graphs) run of each batch.
int EagerSteps(const BenchOptions& o) {
  return o.eager_steps < 0 ? o.gen_tokens : std::min(o.eager_steps, o.gen_tokens);
}

struct DecodeRow {
  int batch = 0;
  double ms_step = 0, tok_s = 0, gb_step = 0, latency_s = 0;
};

// Prefills `batch` prompts together, then decodes `steps` greedy steps (the first two — a decode
// bucket's eager warm-up and its graph capture — are left out of the median). The request
// latency is the wall time from the prefill's start to the last step's tokens on the host.
Expected<DecodeRow> BenchDecode(CudaRunner& runner, int batch, const BenchOptions& o,
                                int per_seq, int steps) {
  const int vocab = runner.config().vocab_size;
  // Prefill every sequence's prompt in one step.
  Batch pre;
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < o.prompt_len; ++i) pre.token_ids.push_back(TokenId(s * 100003 + i, vocab));
    pre.sequences.push_back(Sequence(s, s * o.prompt_len, o.prompt_len, 0, per_seq));
    pre.logits_indices.push_back((s + 1) * o.prompt_len - 1);
  }
  std::vector<int32_t> next;
  const auto start = std::chrono::steady_clock::now();
  GS_RETURN_IF_ERROR(runner.ForwardGreedy(pre, &next));
  std::vector<double> times;
  double bytes = 0;
  int measured_bytes = 0;
  for (int step = 0; step < steps; ++step) {
    Batch b;
    for (int s = 0; s < batch; ++s) {
      b.token_ids.push_back(next[static_cast<size_t>(s)]);
      b.sequences.push_back(Sequence(s, s, 1, o.prompt_len + step, per_seq));
      b.logits_indices.push_back(s);
    }
    const auto t0 = std::chrono::steady_clock::now();
    GS_RETURN_IF_ERROR(DecodeStep(runner, b, o.sampling, step, &next));
    const double t = Seconds(t0);
    if (step >= 2) times.push_back(t);  // the first steps warm up plans and caches
    if (step % 16 == 0) {  // reading the expert counts back syncs; sample a few steps
      GS_ASSIGN_OR_RETURN(int64_t step_bytes, runner.LastStepWeightBytes());
      bytes += static_cast<double>(step_bytes);
      ++measured_bytes;
    }
  }
  DecodeRow row;
  row.latency_s = Seconds(start);
  row.batch = batch;
  row.ms_step = Median(times) * 1e3;
  row.tok_s = batch / Median(times);
  row.gb_step = bytes / std::max(measured_bytes, 1) / 1e9;
  return row;
}

// One prompt of `len` tokens in the blocks from `first_block` on.
Expected<double> BenchPrefill(CudaRunner& runner, int len, int first_block) {
  Batch b;
  for (int i = 0; i < len; ++i) b.token_ids.push_back(TokenId(7777777 + i, runner.config().vocab_size));
  b.sequences.push_back(Sequence(0, 0, len, 0, (len + 15) / 16, first_block));
  b.logits_indices.push_back(len - 1);
  std::vector<int32_t> ids;
  std::vector<double> times;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    GS_RETURN_IF_ERROR(runner.ForwardGreedy(b, &ids));
    if (rep > 0) times.push_back(Seconds(t0));
  }
  return len / Median(times);
}

// One configuration's results, for the comparison table.
struct RunResult {
  std::string kv_dtype;
  std::vector<DecodeRow> decode;
  std::vector<std::pair<int, double>> prefill;
};

int RunOnGpu(const ModelConfig& config, const std::string& model, const BenchOptions& o,
             const std::string& kv_dtype, RunResult* result) {
  const int max_batch = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
  const int max_prefill = o.prefill_lens.empty()
                              ? 0 : *std::max_element(o.prefill_lens.begin(), o.prefill_lens.end());
  // Decode sequences own per_seq blocks each; the (one) prefill prompt the blocks after them.
  KvCacheSpec spec;
  spec.block_size = 16;
  spec.max_sequences = std::max(1, max_batch);
  const int per_seq = (o.prompt_len + o.gen_tokens + 15) / 16;
  const int prefill_block0 = per_seq * spec.max_sequences;
  spec.num_global_blocks = prefill_block0 + (max_prefill + 15) / 16;

  const auto t0 = std::chrono::steady_clock::now();
  Expected<std::unique_ptr<CudaRunner>> runner = MakeError("unset");
  CudaRunnerOptions ro;
  ro.enforce_eager = o.enforce_eager;
  ro.kv_cache_dtype = kv_dtype;
  if (model.empty()) {
    runner = CreateDummyCudaRunner(config, spec, ro);
  } else {
    auto dir = model;
    auto weights = LoadGemma4Weights(config, dir);
    if (!weights) return Fail("bench", weights.error().message);
    runner = CreateCudaRunner(config, *weights, spec, ro);
  }
  if (!runner) return Fail("bench", runner.error().message);
  CudaRunner& r = **runner;
  std::fprintf(stderr, "weights: %.2f GB on %s (%s, %.1f s)\n", r.weight_bytes() / 1e9,
               r.device_name().c_str(), model.empty() ? "dummy, generated on the GPU" : model.c_str(),
               Seconds(t0));
  auto copy_bw = MeasureCopyBandwidth();
  if (!copy_bw) return Fail("bench", copy_bw.error().message);

  std::vector<DecodeRow> rows, eager_rows;
  for (int batch : o.batch_sizes) {
    std::fprintf(stderr, "decode batch %d ...\n", batch);
    auto row = BenchDecode(r, batch, o, per_seq, o.gen_tokens);
    if (!row) return Fail("bench", row.error().message);
    rows.push_back(*row);
    DecodeRow eager;
    if (o.eager_steps != 0 && !o.enforce_eager) {
      r.set_enforce_eager(true);
      auto e = BenchDecode(r, batch, o, per_seq, EagerSteps(o));
      r.set_enforce_eager(false);
      if (!e) return Fail("bench", e.error().message);
      eager = *e;
    }
    eager_rows.push_back(eager);
  }
  std::vector<std::pair<int, double>> prefill;
  for (int len : o.prefill_lens) {
    std::fprintf(stderr, "prefill %d ...\n", len);
    auto tps = BenchPrefill(r, len, prefill_block0);
    if (!tps) return Fail("bench", tps.error().message);
    prefill.push_back({len, *tps});
  }

  std::printf("device: %s; device-to-device copy %.0f GB/s (read + write); weights %.2f GB\n",
              r.device_name().c_str(), *copy_bw, r.weight_bytes() / 1e9);
  const char* picking =
      o.sampling == "greedy" ? "greedy on GPU"
      : o.sampling == "gpu"  ? "sampled on GPU, T 1 top_k 64 top_p 0.95"
                             : "sampled on the host from copied logits, T 1 top_k 64 top_p 0.95";
  // Eager steps fewer than the graph run's measure shorter contexts: at large batches, where the
  // attention is a large share of the step, that flatters eager (H100, batch 128: 0.95x with 16
  // eager steps, 1.00x with all 256; docs/benchmarks.md, session 8).
  std::string eager_what = "the same batches kernel by kernel";
  if (o.eager_steps == 0 || o.enforce_eager) {
    eager_what = "not measured";
  } else if (EagerSteps(o) < o.gen_tokens) {
    eager_what = "the first " + std::to_string(EagerSteps(o)) +
                 " steps of the same batches kernel by kernel, at shorter contexts than the graph "
                 "column";
  }
  std::printf("decode: prompt %d tokens, %d generated per sequence (median step, %s; "
              "%s; eager column: %s); %s KV cache\n",
              o.prompt_len, o.gen_tokens, picking,
              o.enforce_eager ? "--enforce-eager" : "CUDA graphs", eager_what.c_str(),
              kv_dtype == "fp8" ? "FP8 (e4m3)" : "BF16");
  std::printf("| batch | tok/s | ms/step | eager tok/s | graphs/eager | avg request latency s | "
              "weight GB/step | achieved GB/s | %% of copy BW |\n");
  std::printf("|------:|------:|--------:|------------:|-------------:|----------------------:|"
              "---------------:|--------------:|-------------:|\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const DecodeRow& row = rows[i];
    const DecodeRow& e = eager_rows[i];
    const double gbs = row.gb_step / (row.ms_step / 1e3);
    std::printf("| %5d | %7.1f | %7.2f | %11.1f | %11.2fx | %21.2f | %14.2f | %13.0f | %11.1f%% |\n",
                row.batch, row.tok_s, row.ms_step, e.tok_s, e.tok_s > 0 ? row.tok_s / e.tok_s : 0.0,
                row.latency_s, row.gb_step, gbs, 100.0 * gbs / *copy_bw);
  }
  if (!prefill.empty()) {
    std::printf("| prefill tokens | tok/s |\n|---------------:|------:|\n");
    for (const auto& [len, tps] : prefill) std::printf("| %14d | %7.0f |\n", len, tps);
  }
  result->kv_dtype = kv_dtype;
  result->decode = rows;
  result->prefill = prefill;
  return 0;
}

// Decode and prefill tok/s of every KV cache dtype side by side (ratio against the first).
void PrintComparison(const std::vector<RunResult>& runs) {
  std::printf("\nKV cache dtype comparison (tok/s; ratio to %s)\n", runs[0].kv_dtype.c_str());
  std::printf("| workload |");
  for (const RunResult& r : runs) std::printf(" %s tok/s |", r.kv_dtype.c_str());
  for (size_t i = 1; i < runs.size(); ++i) std::printf(" %s/%s |", runs[i].kv_dtype.c_str(), runs[0].kv_dtype.c_str());
  std::printf("\n|---------:|");
  for (size_t i = 0; i < 2 * runs.size() - 1; ++i) std::printf("------:|");
  std::printf("\n");
  for (size_t b = 0; b < runs[0].decode.size(); ++b) {
    std::printf("| decode batch %d |", runs[0].decode[b].batch);
    for (const RunResult& r : runs) std::printf(" %.1f |", r.decode[b].tok_s);
    for (size_t i = 1; i < runs.size(); ++i) std::printf(" %.2fx |", runs[i].decode[b].tok_s / runs[0].decode[b].tok_s);
    std::printf("\n");
  }
  for (size_t p = 0; p < runs[0].prefill.size(); ++p) {
    std::printf("| prefill %d |", runs[0].prefill[p].first);
    for (const RunResult& r : runs) std::printf(" %.0f |", r.prefill[p].second);
    for (size_t i = 1; i < runs.size(); ++i) std::printf(" %.2fx |", runs[i].prefill[p].second / runs[0].prefill[p].second);
    std::printf("\n");
  }
}

#endif  // GS_HAVE_CUDA

}  // namespace

int RunBench(int argc, char** argv) {
  CLI::App app{"Offline GPU benchmark: decode tok/s per batch size with weight bandwidth against a\n"
               "device-to-device copy, and prefill tok/s. --load-format dummy needs no checkpoint."};
  std::string config_path, model, load_format = "dummy", batches = "1,4,16,32,128",
                                   prefills = "1024,4096,16384";
  BenchOptions o;
  app.add_option("--config", config_path,
                 "config.json (or its directory) giving the shapes, e.g. "
                 "configs/gemma-4-26B-A4B-it/config.json");
  app.add_option("--model", model, "checkpoint directory (with --load-format auto)");
  app.add_option("--load-format", load_format,
                 "dummy: random weights generated on the GPU; auto: load --model")
      ->check(CLI::IsMember({"dummy", "auto"}));
  app.add_option("--batch-sizes", batches, "decode batch sizes, comma-separated");
  app.add_option("--prompt-len", o.prompt_len, "prompt tokens per sequence before decoding")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--gen-tokens", o.gen_tokens, "decode steps per batch size")
      ->check(CLI::Range(3, 1 << 16));
  app.add_option("--prefill-lens", prefills, "prefill prompt lengths, comma-separated ('' = none)");
  app.add_option("--eager-steps", o.eager_steps,
                 "decode steps per batch size run again without CUDA graphs (-1 = as many as "
                 "--gen-tokens, 0 = skip; fewer than --gen-tokens compare eager at shorter "
                 "contexts than the graphs)")
      ->check(CLI::Range(-1, 1 << 16));
  app.add_flag("--enforce-eager", o.enforce_eager,
               "run decode steps kernel by kernel (no CUDA graphs)");
  bool vision = false;
  VisionBenchOptions vo;
  std::string vision_batches = "1,8";
  app.add_flag("--vision", vision,
               "benchmark the vision encoder instead: images/s per encoder pass of "
               "--vision-batches images, and the TTFT of a one-image chat prompt");
  app.add_option("--vision-budget", vo.max_soft_tokens, "soft-token budget of the test image")
      ->check(CLI::IsMember({70, 140, 280, 560, 1120}));
  app.add_option("--vision-image-size", vo.image_size, "side of the square test image, pixels")
      ->check(CLI::Range(16, 8192));
  app.add_option("--vision-batches", vision_batches, "images per encoder pass, comma-separated");
  app.add_option("--sampling", o.sampling,
                 "how decode steps pick tokens: greedy (argmax on the GPU), gpu (sampling on the "
                 "GPU: T 1, top_k 64, top_p 0.95), host (the same on the CPU from copied logits)")
      ->check(CLI::IsMember({"greedy", "gpu", "host"}));
  std::string kv_dtypes = "bf16";
  app.add_option("--kv-cache-dtype", kv_dtypes,
                 "KV cache element type: bf16, fp8 (e4m3 with per-row scales), or a comma list "
                 "(e.g. bf16,fp8) to run each and print a comparison table");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto b = ParseIntList(batches, "--batch-sizes", 1, true);
  if (!b) return Fail("bench", b.error().message);
  o.batch_sizes = *b;
  if (!prefills.empty()) {
    auto p = ParseIntList(prefills, "--prefill-lens", 1, true);
    if (!p) return Fail("bench", p.error().message);
    o.prefill_lens = *p;
  }
  o.kv_dtypes.clear();
  {
    std::stringstream in(kv_dtypes);
    std::string part;
    while (std::getline(in, part, ',')) {
      if (part == "auto") part = "bf16";
      if (part != "bf16" && part != "fp8") {
        return Fail("bench", "--kv-cache-dtype: '" + part + "' is not bf16 or fp8");
      }
      o.kv_dtypes.push_back(part);
    }
    if (o.kv_dtypes.empty()) return Fail("bench", "--kv-cache-dtype: empty list");
  }
  if (load_format == "auto" && model.empty()) return Fail("bench", "--load-format auto needs --model");
  if (load_format == "dummy" && config_path.empty()) {
    return Fail("bench", "--load-format dummy needs --config (e.g. configs/gemma-4-26B-A4B-it)");
  }
  Expected<ModelConfig> config =
      load_format == "dummy" ? LoadConfigPath(config_path) : LoadModelConfig(model);
  if (!config) return Fail("bench", config.error().message);
  if (vision) {
    auto vb = ParseIntList(vision_batches, "--vision-batches", 1, true);
    if (!vb) return Fail("bench", vb.error().message);
    vo.batches = *vb;
    return RunVisionBench(*config, load_format == "dummy" ? std::string() : model, vo);
  }
#if GS_HAVE_CUDA
  std::vector<RunResult> runs;
  for (const std::string& kv : o.kv_dtypes) {
    RunResult r;
    const int rc = RunOnGpu(*config, load_format == "dummy" ? std::string() : model, o, kv, &r);
    if (rc != 0) return rc;
    runs.push_back(std::move(r));
  }
  if (runs.size() > 1) PrintComparison(runs);
  return 0;
#else
  return Fail("bench", "this gemmaserve was built without CUDA (nvcc was not found when it was "
                       "configured); the benchmark needs the CUDA runner");
#endif
}

}  // namespace gs::cli
