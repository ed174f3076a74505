// gemmaserve generate: one prompt of token ids through the model; prints the generated ids and
// the prefill / decode speed. --dump-logits writes the prompt's logits for comparisons. --image
// adds images (see cli/image_prompt.h for where their tokens go).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "cli/image_prompt.h"
#include "cli/model_loading.h"
#include "model/checkpoint.h"
#include "runtime/generate.h"
#include "util/npy.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace gs::cli {
namespace {

Expected<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = text.find(',', i);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(i, end - i);
    char* stop = nullptr;
    const long v = std::strtol(part.c_str(), &stop, 10);
    if (part.empty() || *stop != '\0' || v < 0 || v > INT32_MAX) {
      return MakeError("--prompt-ids: '", part, "' is not a token id (expected e.g. 2,105,2364)");
    }
    ids.push_back(static_cast<int32_t>(v));
    i = end + 1;
  }
  if (ids.empty()) return MakeError("--prompt-ids is empty");
  return ids;
}

std::string JoinIds(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  CLI::App app{"Run a prompt of token ids through a Gemma 4 checkpoint and print the generated ids.\n"
               "Sampling defaults come from the model's generation_config.json; --temperature 0 is greedy."};
  std::string model, prompt_text, dump_logits, device = "cpu";
  int max_tokens = 16, prefill_chunk = 0, threads = 0;
  std::optional<double> temperature, top_p, min_p;
  std::optional<int> top_k;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<std::string> image_files;
  int max_soft_tokens = 0;
  app.add_option("--model", model, "checkpoint directory or Hugging Face id in the local cache")->required();
  app.add_option("--prompt-ids", prompt_text, "comma-separated token ids, e.g. 2,105,2364")->required();
  app.add_option("--max-tokens", max_tokens, "tokens to generate (0 = only score the prompt)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--temperature", temperature, "sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-k", top_k, "keep the k most likely tokens (0 = off)")->check(CLI::Range(0, 1 << 30));
  app.add_option("--top-p", top_p, "nucleus sampling mass (1 = off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", min_p, "drop tokens below min-p x the top probability")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "random seed for sampling");
  app.add_option("--prefill-chunk", prefill_chunk,
                 "prompt tokens per forward step (0 = whole prompt; 1 = token by token)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--dump-logits", dump_logits,
                 "write the prompt's final logits as float32 .npy [prompt tokens, vocab]");
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--device", device, "cpu (fp32 reference) or cuda (needs a CUDA build and GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--ignore-eos", ignore_eos, "keep generating past end-of-sequence tokens");
  app.add_option("--image", image_files,
                 "image file (PNG, JPEG, GIF, WebP; repeatable). Each replaces the next image "
                 "placeholder id (config image_token_id, 258880 = <|image|> for Gemma 4) in "
                 "--prompt-ids with <|image> + n x <|image|> + <image|>; without placeholders "
                 "the images are appended to the prompt. Both devices.");
  app.add_option("--max-soft-tokens", max_soft_tokens,
                 "image token budget per image: 70, 140, 280, 560 or 1120 (default: the "
                 "config's default_output_length, 280)");
  bool enforce_eager = false;
  app.add_flag("--enforce-eager", enforce_eager,
               "--device cuda: run decode steps kernel by kernel (no CUDA graphs)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  auto ids = ParseIds(prompt_text);
  if (!ids) return Fail("generate", ids.error().message);
  ImagePrompt image_prompt;
  if (!image_files.empty()) {
    auto dir = ResolveModelPath(model);
    if (!dir) return Fail("generate", dir.error().message);
    auto cfg = LoadModelConfig(*dir);
    if (!cfg) return Fail("generate", cfg.error().message);
    auto built = BuildImagePrompt(*cfg, *ids, image_files, max_soft_tokens);
    if (!built) return Fail("generate", built.error().message);
    image_prompt = std::move(*built);
    *ids = image_prompt.ids;
  }
  const int total = static_cast<int>(ids->size()) + max_tokens;
  auto loaded = LoadModel(model, device, total, CpuRunnerOptions{threads, 0.0f},
                          !image_files.empty());
  if (!loaded) return Fail("generate", loaded.error().message);
#if GS_HAVE_CUDA
  if (auto* cuda = dynamic_cast<CudaRunner*>(loaded->runner.get()); cuda && enforce_eager) {
    cuda->set_enforce_eager(true);
  }
#endif
  const ModelConfig& config = loaded->runner->config();

  GenerateOptions opts;
  opts.max_tokens = max_tokens;
  opts.prefill_chunk = prefill_chunk;
  opts.prompt_logits = !dump_logits.empty();
  opts.ignore_eos = ignore_eos;
  opts.stop_ids = config.eos_token_ids;
  const auto& g = config.generation;
  opts.sampling.temperature = temperature.value_or(g.do_sample ? g.temperature : 0.0);
  opts.sampling.top_k = top_k.value_or(g.do_sample ? g.top_k : 0);
  opts.sampling.top_p = top_p.value_or(g.do_sample ? g.top_p : 1.0);
  opts.sampling.min_p = min_p.value_or(g.do_sample ? g.min_p : 0.0);
  opts.sampling.seed = seed;
  if (!image_prompt.images.empty()) {
    auto encoded = EncodeImages(*loaded->runner, image_prompt);
    if (!encoded) return Fail("generate", encoded.error().message);
    opts.images = std::move(*encoded);
    std::fprintf(stderr, "%zu image(s): %zu prompt tokens after expansion\n", opts.images.size(),
                 ids->size());
  }

  auto result = Generate(*loaded->runner, *ids, opts);
  if (!result) return Fail("generate", result.error().message);
  if (!dump_logits.empty()) {
    const std::vector<int64_t> shape = {static_cast<int64_t>(ids->size()), config.vocab_size};
    auto st = WriteNpyFloat32(dump_logits, shape, result->prompt_logits.data());
    if (!st) return Fail("generate", st.error().message);
  }
  std::printf("%s\n", JoinIds(result->tokens).c_str());
  const double n = static_cast<double>(ids->size()), m = static_cast<double>(result->tokens.size());
  std::fprintf(stderr, "prefill: %.0f tokens in %.3f s (%.1f tok/s); decode: %.0f tokens in %.3f s (%.1f tok/s)\n",
               n, result->prefill_seconds, n / std::max(result->prefill_seconds, 1e-9), m,
               result->decode_seconds, m > 1 ? (m - 1) / std::max(result->decode_seconds, 1e-9) : 0.0);
  return 0;
}

}  // namespace gs::cli
