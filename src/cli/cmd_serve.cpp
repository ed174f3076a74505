// gemmaserve serve: the OpenAI-compatible HTTP server, with `vllm serve`'s flags.
//
//   gemmaserve serve FusenAI/gemma-4-26B-A4B-it-NVFP4 --max-model-len 4096
//
// SIGINT / SIGTERM: stop accepting work, let running requests finish (up to --drain-timeout),
// cancel the rest, exit 0. A second signal cancels at once.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <time.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/runner_factory.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/quant_config.h"
#include "server/model_server.h"
#include "tools/demo_tokenizer.h"
#include "tools/embedded_files.h"
#include "util/mapped_file.h"
#include "vision/image.h"

namespace gs::cli {
namespace {

struct ServeFlags {
  std::string model_positional, model, quantization, chat_template, generation_config = "auto";
  std::vector<std::string> served_model_names;
  std::string host = "127.0.0.1", api_key, device = "cpu", kv_cache_dtype = "auto";
  std::string default_chat_template_kwargs, tool_call_parser, reasoning_parser;
  std::string load_format = "auto", config_path, tokenizer;
  int port = 8000, max_model_len = 0, max_num_seqs = 32, max_num_batched_tokens = 2048;
  int threads = 0, kv_cache_tokens = 0, max_waiting_requests = 256, http_threads = 0;
  int prefix_snapshot_interval = 0, prefix_snapshots = 8;
  double gpu_memory_utilization = 0.9, drain_timeout = 30.0;
  size_t max_body_mb = 32;
  bool prefix_caching = true, enforce_eager = false, auto_tool_choice = false;
  // Image input (chat image_url parts).
  std::string allowed_local_media_path;
  bool allow_remote_images = false;
  double image_fetch_timeout = 10.0;
  size_t max_image_mb = kMaxImageBytes >> 20;
  int64_t max_image_pixels = kMaxImagePixels;
  int max_images_per_request = kMaxImagesPerRequest;
};

void AddFlags(CLI::App& app, ServeFlags& f) {
  app.add_option("model_tag", f.model_positional,
                 "checkpoint directory or Hugging Face id in the local cache (or use --model)");
  app.add_option("--model", f.model, "same as the positional model argument");
  app.add_option("--quantization,-q", f.quantization,
                 "expected quantization; checked against the checkpoint (which is detected anyway)")
      ->check(CLI::IsMember({"modelopt", "modelopt_fp4", "compressed-tensors"}));
  app.add_option("--served-model-name", f.served_model_names,
                 "name(s) the API answers to; the first is reported (default: the model argument)");
  app.add_option("--host", f.host, "address to listen on");
  app.add_option("--port", f.port, "port to listen on")->check(CLI::Range(1, 65535));
  app.add_option("--api-key", f.api_key, "require 'Authorization: Bearer <key>' on /v1/*");
  app.add_option("--max-model-len", f.max_model_len,
                 "prompt + output tokens per sequence (default: what the KV pool and the model allow)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-num-seqs", f.max_num_seqs, "sequences running at once")
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-num-batched-tokens", f.max_num_batched_tokens, "tokens per engine step")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--max-waiting-requests", f.max_waiting_requests,
                 "requests queued beyond the running ones before new ones get 429")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--gpu-memory-utilization", f.gpu_memory_utilization,
                 "fraction of the GPU's memory this process may use; the KV pool gets what the "
                 "weights and the largest step leave of it (CUDA; ignored on --device cpu)")
      ->check(CLI::Range(0.05, 1.0));
  app.add_option("--kv-cache-dtype", f.kv_cache_dtype, "KV cache element type")
      ->check(CLI::IsMember({"auto", "bf16", "fp8"}));
  app.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", f.prefix_caching,
               "reuse the KV of shared prompt prefixes (default on)");
  app.add_option("--prefix-snapshot-interval", f.prefix_snapshot_interval,
                 "also snapshot sliding-window state every N prompt tokens (0: prompt ends only)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--prefix-snapshots", f.prefix_snapshots,
                 "KV slots kept for sliding-window snapshots of cached prefixes")
      ->check(CLI::Range(0, 4096));
  app.add_option("--chat-template", f.chat_template,
                 "chat template file or inline template (default: the model's)");
  app.add_option("--default-chat-template-kwargs", f.default_chat_template_kwargs,
                 "JSON object merged under each request's chat_template_kwargs, e.g. "
                 "'{\"enable_thinking\": true}'");
  app.add_flag("--enforce-eager", f.enforce_eager,
               "CUDA: run decode steps kernel by kernel, no CUDA graphs (no-op on CPU)");
  app.add_option("--load-format", f.load_format,
                 "'auto' (the checkpoint's safetensors) or 'dummy': random weights of the config's "
                 "shapes generated on the GPU, as vLLM's --load-format dummy, for benchmarks "
                 "(--device cuda; the model argument, or --config, is a directory holding just "
                 "config.json). Without a tokenizer.json there (and no --tokenizer) a stand-in "
                 "tokenizer with the config's vocabulary size is written to a temporary directory: "
                 "make-demo-model's character-level tokenizer with Gemma 4's special tokens, so "
                 "/tokenize and bench-serve work; its text is meaningless, like the weights")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
  app.add_option("--config", f.config_path,
                 "config.json (or its directory) for --load-format dummy, instead of the model "
                 "argument");
  app.add_option("--tokenizer", f.tokenizer,
                 "directory with tokenizer.json (and tokenizer_config.json / chat template) to use "
                 "instead of the model directory's");
  app.add_option("--generation-config", f.generation_config,
                 "'auto' (the model's generation_config.json), 'vllm' (no model defaults), or a "
                 "directory holding a generation_config.json");
  app.add_option("--device", f.device, "cpu (fp32 reference runner) or cuda (a CUDA build and GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", f.threads, "CPU threads for the model (0 = all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--kv-cache-tokens", f.kv_cache_tokens,
                 "global-layer KV pool size in tokens (CPU default max(16384, max-model-len); "
                 "CUDA default: sized from --gpu-memory-utilization)")
      ->check(CLI::Range(0, 1 << 26));
  app.add_option("--http-threads", f.http_threads,
                 "HTTP worker threads (0 = 2 x max-num-seqs + 64); each open stream holds one")
      ->check(CLI::Range(0, 65536));
  app.add_option("--max-body-mb", f.max_body_mb, "largest request body accepted (413 beyond)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--drain-timeout", f.drain_timeout,
                 "seconds SIGTERM/SIGINT waits for running requests before cancelling them")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--allowed-local-media-path", f.allowed_local_media_path,
                 "directory whose files chat requests may send as file:// image URLs (symlinks "
                 "and '..' are resolved first; default: file:// URLs refused)");
  app.add_flag("--allow-remote-images", f.allow_remote_images,
               "fetch http:// and https:// image URLs (default: refused; data: URLs always work)");
  app.add_option("--image-fetch-timeout", f.image_fetch_timeout,
                 "seconds to connect and to read a remote image")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--max-image-mb", f.max_image_mb, "largest encoded image accepted, in MiB")
      ->check(CLI::Range(1, 1024));
  app.add_option("--max-image-pixels", f.max_image_pixels,
                 "largest image accepted, in pixels (width x height; checked from the header)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--max-images-per-request", f.max_images_per_request,
                 "images in one chat request (each costs an encoder pass and up to 1122 tokens)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--tool-call-parser", f.tool_call_parser, "accepted for vLLM compatibility")
      ->check(CLI::IsMember({"gemma4"}));
  app.add_option("--reasoning-parser", f.reasoning_parser, "accepted for vLLM compatibility")
      ->check(CLI::IsMember({"gemma4"}));
  app.add_flag("--enable-auto-tool-choice", f.auto_tool_choice,
               "accepted for vLLM compatibility (tool calls are always parsed for tool_choice auto)");
}

Status CheckQuantization(const std::string& dir, const std::string& expected) {
  GS_ASSIGN_OR_RETURN(QuantizationInfo quant, LoadQuantizationInfo(dir));
  if (expected.empty()) return Ok();
  const std::string want = expected == "modelopt_fp4" ? "modelopt" : expected;
  if (want != QuantMethodName(quant.method)) {
    return MakeError("--quantization ", expected, ": the checkpoint ", dir, " is ",
                     QuantMethodName(quant.method),
                     quant.source.empty() ? "" : StrCat(" (declared in ", quant.source, ")"));
  }
  return Ok();
}

Status ApplyGenerationFlag(const std::string& flag, const std::string& model_dir,
                           ModelConfig* config, std::optional<SamplingParams>* defaults) {
  if (flag == "auto") return Ok();  // LoadModelConfig already read the model's file
  if (flag == "vllm") {
    SamplingParams plain;  // vLLM's own defaults: plain sampling at temperature 1
    plain.temperature = 1.0;
    *defaults = plain;
    return Ok();
  }
  const std::string path = (std::filesystem::path(flag) / "generation_config.json").string();
  GS_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  (void)model_dir;
  return ApplyGenerationConfig(text, path, config);
}

// KV memory the CPU runner allocates for this spec (fp32 elements), for the startup line.
std::string KvMemoryLine(const ModelConfig& c, const KvCacheSpec& spec) {
  int64_t global = 0, sliding = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    const int64_t b = c.KvBytesPerToken(l, 4);
    (c.layers[static_cast<size_t>(l)].kind == LayerKind::kGlobal ? global : sliding) += b;
  }
  const double mib = 1024.0 * 1024.0;
  const double pool = static_cast<double>(global) * spec.num_global_blocks * spec.block_size / mib;
  const double rings = static_cast<double>(sliding) * c.sliding_window * spec.max_sequences / mib;
  return StrCat("KV memory (fp32 on CPU): global pool ", static_cast<int64_t>(pool),
                " MiB + sliding rings ", static_cast<int64_t>(rings), " MiB (", spec.max_sequences,
                " slots x ", c.sliding_window, " positions)");
}

// --config: a config.json file or the directory holding it -> the directory.
Expected<std::string> ConfigDir(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) return p.string();
  if (!std::filesystem::exists(p, ec)) return MakeError("--config ", path, ": no such file");
  if (p.filename() != "config.json") {
    return MakeError("--config ", path, ": expected a file named config.json or its directory");
  }
  return p.parent_path().empty() ? std::string(".") : p.parent_path().string();
}

// Removes a directory this process wrote when it goes out of scope.
struct TempDir {
  explicit TempDir(std::string p) : path(std::move(p)) {}
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;
};

// Where the tokenizer (and chat template) come from: --tokenizer, else the model directory; for
// --load-format dummy without a tokenizer.json, a stand-in written to a temporary directory.
Expected<std::string> TokenizerDir(const std::string& flag, const std::string& model_dir,
                                   bool dummy, int vocab_size) {
  std::error_code ec;
  if (!flag.empty()) {
    if (!std::filesystem::exists(std::filesystem::path(flag) / "tokenizer.json", ec)) {
      return MakeError("--tokenizer ", flag, ": no tokenizer.json in that directory");
    }
    return flag;
  }
  if (!dummy || std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json", ec)) {
    return model_dir;
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    StrCat("gemmaserve-dummy-tokenizer-", ::getpid());
  std::filesystem::create_directories(dir, ec);
  if (ec) return MakeError("cannot create ", dir.string(), ": ", ec.message());
  auto write = [&]() -> Status {
    GS_RETURN_IF_ERROR(WriteTextFile((dir / "tokenizer.json").string(),
                                     DemoTokenizerJson(vocab_size).dump()));
    GS_RETURN_IF_ERROR(WriteTextFile((dir / "tokenizer_config.json").string(),
                                     DemoTokenizerConfig().dump(2) + "\n"));
    const std::filesystem::path tmpl = std::filesystem::path(model_dir) / "chat_template.jinja";
    std::error_code exists_ec;
    std::string text = Gemma4ChatTemplate();
    if (std::filesystem::exists(tmpl, exists_ec)) {
      GS_ASSIGN_OR_RETURN(text, ReadTextFile(tmpl.string()));
    }
    return WriteTextFile((dir / "chat_template.jinja").string(), text);
  };
  if (Status st = write(); !st) {
    std::filesystem::remove_all(dir, ec);
    return st.take_error();
  }
  std::fprintf(stderr, "--load-format dummy: stand-in tokenizer (%d ids, character-level) in %s\n",
               vocab_size, dir.string().c_str());
  return dir.string();
}

// Waits for SIGINT/SIGTERM (blocked in every thread, so only this sigwait sees them).
int WaitForSignal(const sigset_t& set, double timeout_s) {
  if (timeout_s < 0) {
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
  }
  timespec ts{static_cast<time_t>(timeout_s),
              static_cast<long>((timeout_s - static_cast<double>(static_cast<time_t>(timeout_s))) * 1e9)};
  const int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace

int RunServe(int argc, char** argv) {
  CLI::App app{"Serve a Gemma 4 checkpoint over an OpenAI-compatible HTTP API (as `vllm serve`):\n"
               "/v1/chat/completions, /v1/completions, /v1/models, /tokenize, /detokenize,\n"
               "/health, /metrics. Example:\n"
               "  gemmaserve serve FusenAI/gemma-4-26B-A4B-it-NVFP4 --max-model-len 4096"};
  ServeFlags f;
  AddFlags(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const bool dummy = f.load_format == "dummy";
  std::string model = !f.model.empty() ? f.model : f.model_positional;
  if (!f.config_path.empty() && !dummy) {
    return Fail("serve", "--config is for --load-format dummy (a checkpoint brings its own)");
  }
  if (dummy && !f.config_path.empty()) {
    auto dir = ConfigDir(f.config_path);
    if (!dir) return Fail("serve", dir.error().message);
    if (!model.empty() && model != *dir) {
      return Fail("serve", StrCat("--load-format dummy: give the config either as the model ('",
                                  model, "') or as --config, not both"));
    }
    model = *dir;
  }
  if (model.empty()) {
    return Fail("serve", "no model given (positional argument or --model; with --load-format "
                         "dummy also --config)");
  }
  if (!f.model.empty() && !f.model_positional.empty() && f.model != f.model_positional) {
    return Fail("serve", StrCat("two different models given: '", f.model_positional, "' and --model '",
                                f.model, "'"));
  }
  server::Json default_kwargs = server::Json::object();
  if (!f.default_chat_template_kwargs.empty()) {
    try {
      default_kwargs = server::Json::parse(f.default_chat_template_kwargs);
    } catch (const std::exception& e) {
      return Fail("serve", StrCat("--default-chat-template-kwargs: invalid JSON: ", e.what()));
    }
    if (!default_kwargs.is_object()) {
      return Fail("serve", "--default-chat-template-kwargs must be a JSON object");
    }
  }
  // Signals are taken by one sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto dir = ResolveModelPath(model);
  if (!dir) return Fail("serve", dir.error().message);
  if (!dummy) {
    if (Status st = CheckQuantization(*dir, f.quantization); !st) {
      return Fail("serve", st.error().message);
    }
  }
  auto config = LoadModelConfig(*dir);
  if (!config) return Fail("serve", config.error().message);
  server::ModelServerOptions o;
  if (Status st = ApplyGenerationFlag(f.generation_config, *dir, &*config, &o.sampling_defaults); !st) {
    return Fail("serve", st.error().message);
  }

  EngineConfig& ec = o.engine;
  ec.max_num_seqs = f.max_num_seqs;
  ec.max_num_batched_tokens = f.max_num_batched_tokens;
  ec.max_model_len = f.max_model_len;
  ec.max_waiting_requests = f.max_waiting_requests;
  ec.enable_prefix_caching = f.prefix_caching;
  ec.prefix_snapshot_interval = f.prefix_snapshot_interval;
  const int kv_tokens = f.kv_cache_tokens > 0 ? f.kv_cache_tokens : std::max(16384, f.max_model_len);
  const int block = 16;
  RunnerChoice rc;
  rc.device = f.device;
  rc.model_dir = *dir;
  rc.config = *config;
  rc.kv_spec = EngineKvSpec(ec, (kv_tokens + block - 1) / block,
                            f.prefix_caching ? f.prefix_snapshots : 0, block);
  rc.threads = f.threads;
  rc.gpu_memory_utilization = f.gpu_memory_utilization;
  rc.kv_cache_dtype = f.kv_cache_dtype;
  rc.dummy_weights = dummy;
  rc.enforce_eager = f.enforce_eager;
  rc.kv_cache_tokens = f.kv_cache_tokens;
  rc.max_num_seqs = f.max_num_seqs;
  rc.max_num_batched_tokens = f.max_num_batched_tokens;
  rc.max_model_len = f.max_model_len;
  auto runner = MakeRunner(rc);
  if (!runner) return Fail("serve", runner.error().message);
  auto tokenizer_dir = TokenizerDir(f.tokenizer, *dir, dummy, config->vocab_size);
  if (!tokenizer_dir) return Fail("serve", tokenizer_dir.error().message);
  // The stand-in tokenizer of --load-format dummy goes when serve returns, however it returns.
  TempDir stand_in(f.tokenizer.empty() && *tokenizer_dir != *dir ? *tokenizer_dir : "");
  if (f.device == "cpu") std::fprintf(stderr, "%s\n", KvMemoryLine(*config, rc.kv_spec).c_str());

  o.model_dir = *tokenizer_dir;
  o.model_label = model;
  o.served_model_names = f.served_model_names;
  o.chat_template = f.chat_template;
  o.default_chat_template_kwargs = default_kwargs;
  o.http.host = f.host;
  o.http.port = f.port;
  o.http.api_key = f.api_key;
  o.http.threads = f.http_threads;
  o.http.max_body_bytes = f.max_body_mb << 20;
  o.images.allowed_local_media_path = f.allowed_local_media_path;
  o.images.allow_remote = f.allow_remote_images;
  o.images.fetch_timeout_seconds = f.image_fetch_timeout;
  o.images.limits.max_bytes = f.max_image_mb << 20;
  o.images.limits.max_pixels = f.max_image_pixels;
  o.images.max_images_per_request = f.max_images_per_request;
  auto server = server::ModelServer::Create(std::move(*runner), std::move(o));
  if (!server) return Fail("serve", server.error().message);
  std::fprintf(stderr, "%s\n", (*server)->engine().info().Describe().c_str());
  auto port = (*server)->Start();
  if (!port) return Fail("serve", port.error().message);
  std::fprintf(stderr, "gemmaserve: serving %s on %s (OpenAI API under /v1; Ctrl-C to stop)\n",
               model.c_str(), (*server)->url().c_str());
  std::fflush(stderr);

  const int sig = WaitForSignal(signals, -1);
  std::fprintf(stderr, "gemmaserve: %s received: draining (up to %.0f s; signal again to cancel)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", f.drain_timeout);
  std::atomic<bool> done{false};
  std::thread second([&] {
    while (!done) {
      if (WaitForSignal(signals, 0.2) != 0) {
        std::fprintf(stderr, "gemmaserve: cancelling running requests\n");
        (*server)->engine().Shutdown(ShutdownMode::kCancel);
        return;
      }
    }
  });
  (*server)->Shutdown(f.drain_timeout);
  done = true;
  second.join();
  std::fprintf(stderr, "gemmaserve: stopped\n");
  return 0;
}

}  // namespace gs::cli
