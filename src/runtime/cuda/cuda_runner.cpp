#include "runtime/cuda/cuda_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/device_model.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/nvfp4_repack.h"
#include "runtime/cuda/vision_encoder.h"
#include "model/vision_weights.h"
#include "util/numeric_formats.h"

namespace gs {

using cuda::bf16;
using cuda::DeviceBuffer;

namespace {

// Query tiles of one size: ≤ tile_size consecutive tokens of one sequence each.
struct TileList {
  std::vector<int> seq, first, count;
  size_t offset = 0;  // of tile_seq in the metadata buffer (first/count follow)
};

// Per-step scratch, grown to the largest step seen.
struct Scratch {
  DeviceBuffer h, x, qkv, q, k, v, attn, attn_out, x_dense, x_moe, inter_dense, dense_out;
  DeviceBuffer router_in, router_a, router_logits, topk_ids, topk_w, offsets, entries, active;
  DeviceBuffer inter_moe, slot_out, partial;
  DeviceBuffer x_logits, logits, argmax, meta;
  DeviceBuffer argmax_scratch;  // LaunchSoftcapArgmax's counters (kept at 0) and partials
  // ForwardSample's (outside the decode graphs: growing them needs no recapture).
  DeviceBuffer sample_params, sample_ids, sample_logprobs;
};

}  // namespace

struct CudaRunner::Impl {
  ModelConfig config;
  KvCacheSpec spec;
  float embed_scale = 0.0f;
  std::string device_name;
  cudaStream_t stream = nullptr;
  cuda::DeviceModel model;
  cuda::Bf16Gemm gemm;
  std::vector<DeviceBuffer> k_cache, v_cache;
  std::vector<DeviceBuffer> k_scale, v_scale;  // fp8: [cache rows, kv] per layer
  cuda::KvDtype kv_dtype = cuda::KvDtype::kBf16;
  DeviceBuffer active_counts;  // [layers]: distinct experts of the last step
  DeviceBuffer router_done;    // [layers]: LaunchRouterDecode's block counters (kept at 0)
  DeviceBuffer fold_done;      // [layers]: LaunchRouterFoldH's block counters (kept at 0)
  DeviceBuffer split_counters;  // LaunchAttention's decode split counters (kept at 0)
  Scratch s;
  cuda::PinnedBuffer meta_host;
  std::unique_ptr<cuda::VisionEncoder> vision;  // null: no image input
  cuda::PinnedBuffer sample_host;  // ForwardSample's parameters, then its results

  // This step's metadata (host copies and device pointers).
  std::map<int, TileList> tiles;  // by tile size
  std::map<int, int> tile_tokens;  // by GQA group: this step's tile size (decode or prefill kernel)
  cuda::AttentionMeta meta;
  const int* d_token_ids = nullptr;
  const int* d_logit_rows = nullptr;
  const int* d_valid_tokens = nullptr;
  const int* d_key_limit = nullptr;  // this step has image spans (sliding layers only)

  // Decode graphs (one per batch bucket) and the side stream the dense MLP runs on.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  // The folded router's h part (router_fold.cu) runs on the side stream beside the attention.
  cudaEvent_t router_fork = nullptr, router_join = nullptr;
  bool enforce_eager = false;
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    uint64_t epoch = 0;
  };
  std::map<int, Graph> graphs;     // by bucket
  std::map<int, int> bucket_seen;  // eager decode steps per bucket before its capture
  uint64_t epoch_ = 1;             // bumped whenever a scratch buffer moves (graphs hold pointers)
  int graph_launches_ = 0;
  int graph_captures_ = 0;

  ~Impl() {
    DropGraphs();
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (router_fork) cudaEventDestroy(router_fork);
    if (router_join) cudaEventDestroy(router_join);
    if (side) cudaStreamDestroy(side);
    if (stream) cudaStreamDestroy(stream);
  }
  void DropGraphs() {
    for (auto& [b, g] : graphs) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
    }
    graphs.clear();
  }
  // Reserve that records when the buffer moves.
  Status Grow(DeviceBuffer& buf, size_t bytes, const char* what) {
    if (bytes <= buf.bytes()) return Ok();
    ++epoch_;
    return buf.Allocate(bytes, what);
  }

  Status Init(const CudaRunnerOptions& options);
  Status CheckBatch(const Batch& b) const;
  Status UploadMeta(const Batch& b, int valid_tokens);
  Status EnsureScratch(int tokens, int logit_rows);
  int AttentionSplits(int tiles, int kv_heads, int head_dim, int window, bool decode) const;
  Status Attention(int l);
  Status FoldedRouterStart(int l);
  Status Feedforward(int l, int tokens);
  Status FeedforwardFolded(int l);
  Status Combine(int l, int tokens, const float* slot_out);
  Status Step(const Batch& b);
  Status Kernels(const Batch& b);
  Status Logits(const Batch& b);
  Status LaunchGraph(int bucket, const Batch& b);
  int Rows(const Batch& b) const { return static_cast<int>(b.logits_indices.size()); }

  int tokens_ = 0;
  // This step is a decode step: one new token per sequence (a padded bucket, graph or eager).
  bool decode_step_ = false;
  // This step routes through the folded router (RouterFolded): a one-token decode step.
  bool folded_step_ = false;
  bool RouterFolded() const;
  size_t partial_floats_ = 0;
};

namespace {

int MaxQkvRows(const cuda::DeviceModel& m) {
  int r = 0;
  for (const auto& L : m.layers) r = std::max(r, L.q_rows + L.k_rows + L.v_rows);
  return r;
}

template <typename T>
T* Ptr(const DeviceBuffer& b) { return b.get<T>(); }

// The decode attention kernel's split counters: one per (query tile, kv head) of a launch with
// splits > 1. Each launch leaves them at zero, and the layers' launches are ordered on the
// runner's stream, so one array serves every layer, eager step and graph replay.
constexpr int kSplitCounters = 4096;

// GS_ATTN_SPLITS=N (1..32, read once) forces the decode attention's split count, for tuning
// (e.g. splits at batch sizes whose grid alone fills the SMs); unset or 0: AttentionSplits' rule.
int ForcedDecodeSplits() {
  static const int forced = [] {
    const char* env = std::getenv("GS_ATTN_SPLITS");
    return env == nullptr ? 0 : std::clamp(std::atoi(env), 0, 32);
  }();
  return forced;
}

// GS_PROFILE_SKIP=<parts> (read once; for profiling only: every output is then meaningless)
// leaves the named parts out of every layer of every step, so that `gemmaserve bench` measures
// what each part costs in place, overlaps included (scripts/gpu/knockout.sh; the GPU machine has
// no nsys, and ncu serialises the kernels). Parts, comma-separated: qkv, attn, oproj, post,
// dense, router (layers after the first reuse layer 0's routing), experts, combine, lmhead.
bool ProfileSkips(const char* part) {
  static const std::string parts = [] {
    const char* env = std::getenv("GS_PROFILE_SKIP");
    if (env == nullptr || *env == '\0') return std::string();
    std::fprintf(stderr, "warning: GS_PROFILE_SKIP=%s: parts of every step are skipped, every "
                 "output is meaningless (profiling only)\n", env);
    return "," + std::string(env) + ",";
  }();
  return !parts.empty() && parts.find("," + std::string(part) + ",") != std::string::npos;
}

// GS_FUSED_QK_ATTENTION=0 (read once) runs decode steps' qk-norm/RoPE + KV append and the
// attention as two kernels (LaunchQkvNormRopeKv, LaunchAttention) instead of the fused decode
// attention kernel, for A/B measurement; both give the same bits.
bool FusedQkAttention() {
  static const bool on = [] {
    const char* env = std::getenv("GS_FUSED_QK_ATTENTION");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return on;
}

// GS_ROUTER_FOLD=0 (read once) routes one-token decode steps through the router's own kernels
// and the dense MLP's side stream, as larger steps, instead of the folded router
// (router_fold.cu): for A/B measurement and diagnosis.
bool RouterFoldOn() {
  static const bool on = [] {
    const char* env = std::getenv("GS_ROUTER_FOLD");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return on;
}

}  // namespace

// One-token decode steps take the folded router when every layer has it and no profiling switch
// leaves out a part it fuses.
bool CudaRunner::Impl::RouterFolded() const {
  if (!RouterFoldOn() || model.layers.empty()) return false;
  for (const char* part : {"oproj", "post", "dense", "router", "experts"}) {
    if (ProfileSkips(part)) return false;
  }
  // NVFP4 weights only: the paired dense/expert GEMV (LaunchPackedGemvPair) serves them.
  return std::all_of(model.layers.begin(), model.layers.end(), [](const cuda::DeviceLayer& L) {
    return L.router_folded && L.mlp_gate_up.view.format == cuda::PackedFormat::kNvfp4 &&
           L.expert_gate_up.view.format == cuda::PackedFormat::kNvfp4;
  });
}

Status CudaRunner::Impl::Init(const CudaRunnerOptions& options) {
  GS_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  GS_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options.device));
  device_name = prop.name;
  if (prop.major < 9) {
    return MakeError("CUDA device ", options.device, " (", device_name, ") has compute capability ",
                     prop.major, ".", prop.minor, "; this build targets sm_90a (Hopper)");
  }
  GS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  GS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&router_fork, cudaEventDisableTiming));
  GS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&router_join, cudaEventDisableTiming));
  enforce_eager = options.enforce_eager;
  GS_RETURN_IF_ERROR(gemm.Init());
  embed_scale = options.embed_scale > 0
                    ? options.embed_scale
                    : RoundToBf16(std::sqrt(static_cast<float>(config.hidden_size)));
  for (const LayerConfig& lc : config.layers) {
    const int heads = config.num_heads;
    if (lc.num_kv_heads <= 0 || heads % lc.num_kv_heads != 0 ||
        cuda::AttentionTileTokens(heads / lc.num_kv_heads, true) == 0) {
      return MakeError("CUDA attention needs a GQA group of 1, 2, 4 or 8; got ", heads,
                       " heads over ", lc.num_kv_heads, " kv heads");
    }
  }
  if (options.kv_cache_dtype == "fp8") {
    kv_dtype = cuda::KvDtype::kFp8E4m3;
  } else if (options.kv_cache_dtype != "bf16" && options.kv_cache_dtype != "auto") {
    return MakeError("CudaRunnerOptions.kv_cache_dtype: '", options.kv_cache_dtype,
                     "' is not one of auto, bf16, fp8");
  }
  const bool fp8 = kv_dtype == cuda::KvDtype::kFp8E4m3;
  if (config.top_k_experts <= 0 && config.enable_moe_block) {
    return MakeError("config: enable_moe_block with top_k_experts ", config.top_k_experts);
  }
  // KV cache: sliding layers a ring of `window` positions per slot, global layers the paged pool,
  // each with one spare (slot max_sequences, block num_global_blocks) for decode-bucket padding.
  k_cache.resize(config.layers.size());
  v_cache.resize(config.layers.size());
  k_scale.resize(config.layers.size());
  v_scale.resize(config.layers.size());
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const LayerConfig& lc = config.layers[l];
    const size_t positions = lc.kind == LayerKind::kSliding
                                 ? static_cast<size_t>(spec.max_sequences + 1) * config.sliding_window
                                 : static_cast<size_t>(spec.num_global_blocks + 1) * spec.block_size;
    const size_t bytes = positions * lc.num_kv_heads * lc.head_dim * (fp8 ? 1 : sizeof(bf16));
    GS_RETURN_IF_ERROR(k_cache[l].Allocate(bytes, "K cache"));
    GS_RETURN_IF_ERROR(v_cache[l].Allocate(bytes, "V cache"));
    if (fp8) {
      const size_t scale_bytes = positions * lc.num_kv_heads * sizeof(float);
      GS_RETURN_IF_ERROR(k_scale[l].Allocate(scale_bytes, "K cache scales"));
      GS_RETURN_IF_ERROR(v_scale[l].Allocate(scale_bytes, "V cache scales"));
    }
  }
  GS_RETURN_IF_ERROR(active_counts.Allocate(sizeof(int) * config.layers.size(), "expert counts"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(active_counts.get(), 0, active_counts.bytes()));
  GS_RETURN_IF_ERROR(router_done.Allocate(sizeof(int) * config.layers.size(), "router counters"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(router_done.get(), 0, router_done.bytes()));
  GS_RETURN_IF_ERROR(fold_done.Allocate(sizeof(int) * config.layers.size(), "router fold counters"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(fold_done.get(), 0, fold_done.bytes()));
  GS_RETURN_IF_ERROR(split_counters.Allocate(sizeof(int) * kSplitCounters, "split counters"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(split_counters.get(), 0, split_counters.bytes()));
  // Everything above ran on the legacy stream, which does not order with `stream`.
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Ok();
}

Status CudaRunner::Impl::CheckBatch(const Batch& b) const {
  int expected_first = 0;
  if (b.sequences.empty() || b.num_tokens() == 0) return MakeError("batch: no tokens");
  for (const BatchSequence& s : b.sequences) {
    if (s.first_token != expected_first || s.num_tokens <= 0) {
      return MakeError("batch: sequences must cover the tokens contiguously and in order");
    }
    expected_first += s.num_tokens;
    if (s.slot < 0 || s.slot >= spec.max_sequences) {
      return MakeError("batch: KV slot ", s.slot, " is outside [0, ", spec.max_sequences, ")");
    }
    const int64_t end = int64_t{s.start_position} + s.num_tokens;
    if (s.start_position < 0 || end > config.max_position_embeddings) {
      return MakeError("batch: positions up to ", end, " exceed max_position_embeddings ",
                       config.max_position_embeddings);
    }
    const int64_t blocks = (end + spec.block_size - 1) / spec.block_size;
    if (config.num_layers_of(LayerKind::kGlobal) > 0 &&
        static_cast<int64_t>(s.block_table.size()) < blocks) {
      return MakeError("batch: block table of slot ", s.slot, " has ", s.block_table.size(),
                       " blocks, ", blocks, " needed");
    }
    for (int32_t blk : s.block_table) {
      if (blk < 0 || blk >= spec.num_global_blocks) {
        return MakeError("batch: KV block ", blk, " is outside the pool of ",
                         spec.num_global_blocks);
      }
    }
  }
  if (expected_first != b.num_tokens()) return MakeError("batch: tokens not covered by sequences");
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= config.vocab_size) {
      return MakeError("batch: token id ", id, " is outside the vocabulary [0, ", config.vocab_size,
                       ")");
    }
  }
  for (int32_t i : b.logits_indices) {
    if (i < 0 || i >= b.num_tokens()) return MakeError("batch: logits index ", i, " out of range");
  }
  return CheckImageSpans(b, config.hidden_size);
}

// Packs every per-step integer array into one pinned buffer and uploads it with one copy. The
// block tables go last, so every other array sits at an offset that depends only on the token,
// sequence, logit-row and tile counts: a decode graph captured for a batch bucket stays valid
// while the tables grow (the buffer is reserved with headroom; when it moves, graphs recapture).
// `valid_tokens` (the tokens before any bucket padding) is one int after the token ids.
Status CudaRunner::Impl::UploadMeta(const Batch& b, int valid_tokens) {
  const int T = b.num_tokens(), S = static_cast<int>(b.sequences.size());
  std::vector<int> buf;
  buf.reserve(static_cast<size_t>(8 * T + 8 * S));
  auto mark = [&] { return buf.size(); };
  const size_t o_ids = mark();
  buf.insert(buf.end(), b.token_ids.begin(), b.token_ids.end());
  const size_t o_valid = mark();
  buf.push_back(valid_tokens);
  const size_t o_pos = mark();
  buf.resize(buf.size() + 2 * static_cast<size_t>(T));
  const size_t o_tseq = o_pos + T;
  const size_t o_lim = mark();
  if (!b.image_spans.empty()) buf.resize(buf.size() + static_cast<size_t>(T));
  const size_t o_seq = mark();
  buf.resize(buf.size() + 5 * static_cast<size_t>(S));
  int table_at = 0;
  for (int si = 0; si < S; ++si) {
    const BatchSequence& s = b.sequences[static_cast<size_t>(si)];
    for (int i = 0; i < s.num_tokens; ++i) {
      buf[o_pos + s.first_token + i] = s.start_position + i;
      buf[o_tseq + s.first_token + i] = si;
    }
    buf[o_seq + si] = s.start_position;
    buf[o_seq + S + si] = s.first_token;
    buf[o_seq + 2 * S + si] = s.num_tokens;
    buf[o_seq + 3 * S + si] = s.slot;
    buf[o_seq + 4 * S + si] = table_at;  // relative to the tables, which go last
    table_at += static_cast<int>(s.block_table.size());
  }
  if (!b.image_spans.empty()) {
    for (int t = 0; t < T; ++t) buf[o_lim + t] = buf[o_pos + t];
    for (const BatchImageSpan& span : b.image_spans) {
      const int last = buf[o_pos + span.first_token + span.num_tokens - 1];
      for (int i = 0; i < span.num_tokens; ++i) buf[o_lim + span.first_token + i] = last;
    }
  }
  const size_t o_rows = mark();
  buf.insert(buf.end(), b.logits_indices.begin(), b.logits_indices.end());
  // The decode kernel takes the step when every sequence fits one of its tiles.
  int max_seq_tokens = 0;
  for (const BatchSequence& s : b.sequences) max_seq_tokens = std::max(max_seq_tokens, s.num_tokens);
  tiles.clear();
  tile_tokens.clear();
  for (const LayerConfig& lc : config.layers) {
    const int group = config.num_heads / lc.num_kv_heads;
    const int decode_size = cuda::AttentionTileTokens(group, true);
    // Image spans take the prefill kernel: only it reads key_limit.
    const int size = cuda::AttentionTileTokens(
        group, max_seq_tokens <= decode_size && b.image_spans.empty());
    tile_tokens[group] = size;
    if (tiles.count(size)) continue;
    TileList& tl = tiles[size];
    for (int si = 0; si < S; ++si) {
      const BatchSequence& s = b.sequences[static_cast<size_t>(si)];
      for (int i = 0; i < s.num_tokens; i += size) {
        tl.seq.push_back(si);
        tl.first.push_back(s.first_token + i);
        tl.count.push_back(std::min(size, s.num_tokens - i));
      }
    }
    tl.offset = mark();
    buf.insert(buf.end(), tl.seq.begin(), tl.seq.end());
    buf.insert(buf.end(), tl.first.begin(), tl.first.end());
    buf.insert(buf.end(), tl.count.begin(), tl.count.end());
  }
  const size_t o_tables = mark();
  for (const BatchSequence& s : b.sequences) {
    buf.insert(buf.end(), s.block_table.begin(), s.block_table.end());
  }

  const size_t bytes = buf.size() * sizeof(int);
  GS_RETURN_IF_ERROR(meta_host.Reserve(bytes));
  std::copy(buf.begin(), buf.end(), meta_host.get<int>());
  size_t reserve = 64 * 1024;
  while (reserve < bytes) reserve *= 2;
  GS_RETURN_IF_ERROR(Grow(s.meta, reserve, "step metadata"));
  GS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(s.meta.get(), meta_host.get(), bytes, cudaMemcpyHostToDevice, stream));
  const int* d = s.meta.get<int>();
  d_token_ids = d + o_ids;
  d_valid_tokens = d + o_valid;
  d_logit_rows = d + o_rows;
  d_key_limit = b.image_spans.empty() ? nullptr : d + o_lim;
  meta = cuda::AttentionMeta{};
  meta.positions = d + o_pos;
  meta.token_seq = d + o_tseq;
  meta.seq_start = d + o_seq;
  meta.seq_first = d + o_seq + S;
  meta.seq_count = d + o_seq + 2 * S;
  meta.seq_slot = d + o_seq + 3 * S;
  meta.seq_table = d + o_seq + 4 * S;
  meta.block_tables = d + o_tables;
  meta.keys_all_new = std::all_of(b.sequences.begin(), b.sequences.end(),
                                  [](const BatchSequence& q) { return q.start_position == 0; });
  return Ok();
}

Status CudaRunner::Impl::EnsureScratch(int T, int R) {
  const ModelConfig& c = config;
  const size_t t = static_cast<size_t>(T), H = static_cast<size_t>(c.hidden_size);
  const size_t qd = static_cast<size_t>(c.num_heads) * c.max_head_dim();
  size_t kvd = 0;
  for (const auto& lc : c.layers) kvd = std::max(kvd, static_cast<size_t>(lc.num_kv_heads) * lc.head_dim);
  const size_t slots = c.enable_moe_block ? t * c.top_k_experts : 0;
  const size_t E = c.enable_moe_block ? c.num_experts : 0;
  GS_RETURN_IF_ERROR(Grow(s.h, t * H * 4, "h"));
  GS_RETURN_IF_ERROR(Grow(s.x, t * H * 2, "x"));
  GS_RETURN_IF_ERROR(Grow(s.qkv, t * MaxQkvRows(model) * 4, "qkv"));
  GS_RETURN_IF_ERROR(Grow(s.q, t * qd * 2, "q"));
  GS_RETURN_IF_ERROR(Grow(s.k, t * kvd * 2, "k"));
  GS_RETURN_IF_ERROR(Grow(s.v, t * kvd * 2, "v"));
  GS_RETURN_IF_ERROR(Grow(s.attn, t * qd * 2, "attention output"));
  // Folded-router steps append the C rows' outputs (2·E) to each o_proj row.
  GS_RETURN_IF_ERROR(Grow(s.attn_out, t * (H + 2 * E) * 4, "o_proj output"));
  GS_RETURN_IF_ERROR(Grow(s.x_dense, t * H * 2, "dense MLP input"));
  GS_RETURN_IF_ERROR(Grow(s.x_moe, t * H * 2, "expert input"));
  // Intermediate activations at the packed (zero-padded) widths of nvfp4_repack.h.
  const size_t dense_inter = static_cast<size_t>(cuda::PackedWidth(c.intermediate_size));
  const size_t moe_inter = static_cast<size_t>(cuda::PackedWidth(c.moe_intermediate_size));
  GS_RETURN_IF_ERROR(Grow(s.inter_dense, t * dense_inter * 2, "dense intermediate"));
  GS_RETURN_IF_ERROR(Grow(s.dense_out, t * H * 4, "dense MLP output"));
  if (c.enable_moe_block) {
    GS_RETURN_IF_ERROR(Grow(s.router_in, t * H * 4, "router input"));
    GS_RETURN_IF_ERROR(Grow(s.router_a, t * E * 4, "folded router, h part"));
    GS_RETURN_IF_ERROR(Grow(s.router_logits, t * E * 4, "router logits"));
    GS_RETURN_IF_ERROR(Grow(s.topk_ids, slots * 4, "top-k ids"));
    GS_RETURN_IF_ERROR(Grow(s.topk_w, slots * 4, "top-k weights"));
    GS_RETURN_IF_ERROR(Grow(s.offsets, (E + 1) * 4, "expert offsets"));
    GS_RETURN_IF_ERROR(Grow(s.entries, slots * 4, "expert entries"));
    GS_RETURN_IF_ERROR(Grow(s.active, E * 4, "active experts"));
    GS_RETURN_IF_ERROR(Grow(s.inter_moe, slots * moe_inter * 2, "expert intermediate"));
    GS_RETURN_IF_ERROR(Grow(s.slot_out, slots * H * 4, "expert outputs"));
  }
  GS_RETURN_IF_ERROR(Grow(s.x_logits, static_cast<size_t>(R) * H * 2, "final norm"));
  GS_RETURN_IF_ERROR(Grow(s.logits, static_cast<size_t>(R) * c.vocab_size * 4, "logits"));
  GS_RETURN_IF_ERROR(Grow(s.argmax, static_cast<size_t>(R) * 4, "argmax"));
  const size_t argmax_scratch = cuda::SoftcapArgmaxScratchBytes(R);
  if (argmax_scratch > s.argmax_scratch.bytes()) {
    GS_RETURN_IF_ERROR(Grow(s.argmax_scratch, argmax_scratch, "argmax scratch"));
    // Its row counters start at 0; every launch leaves them at 0.
    GS_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(s.argmax_scratch.get(), 0, s.argmax_scratch.bytes(), stream));
  }
  return Ok();
}

// Flash-decoding split of each query's keys when the (tiles × kv heads) grid alone would leave
// most SMs idle, ≤ 32 splits. It depends on the grid only (not on the context length: a query
// tile uses at most one split per tile of keys — 64 for decode, 2 × 32 for prefill — and the
// others exit at once), so eager and graph steps of one shape run the same split and sum in the
// same order. Decode merges in the block of its last split, which reads every used split's
// 8 × head_dim fp32 partials: at most 256 KB of them (16 splits at head_dim 512, 32 at 256), or
// that one block's reads would outlast what the extra splits save. A sliding layer's query tile
// (≤ 8 tokens) sees < window + 8 keys: more splits than those cover would never run.
int CudaRunner::Impl::AttentionSplits(int tiles, int kv_heads, int head_dim, int window,
                                      bool decode) const {
  const int blocks = tiles * kv_heads;
  if (decode && blocks > kSplitCounters) return 1;
  if (decode && ForcedDecodeSplits() > 0) return ForcedDecodeSplits();
  const int sms = cuda::DeviceSmCount();
  if (blocks >= sms) return 1;
  int cap = 32;
  if (decode) {
    const int key_tile = cuda::AttentionDecodeKeyTile();
    cap = std::clamp(256 * 1024 / (8 * head_dim * 4), 1, cap);
    if (window > 0) cap = std::min(cap, (window + 8 + key_tile - 1) / key_tile + 1);
  }
  return std::clamp((2 * sms + blocks - 1) / blocks, 1, cap);
}

Status CudaRunner::Impl::Attention(int l) {
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const LayerConfig& lc = L.lc;
  const int T = tokens_, H = config.hidden_size, d = lc.head_dim;
  const float eps = static_cast<float>(config.rms_norm_eps);
  // Layer 0's input norm; every later layer's comes fused out of the previous FFN combine.
  if (l == 0) {
    GS_RETURN_IF_ERROR(cuda::LaunchRmsNorm(Ptr<float>(s.h), nullptr, T, H, L.input_norm, eps,
                                           Ptr<bf16>(s.x), stream));
  }
  const int tile_size = tile_tokens.at(config.num_heads / lc.num_kv_heads);
  const TileList& tl = tiles.at(tile_size);
  cuda::AttentionMeta m = meta;
  const int* d_meta = s.meta.get<int>();
  m.tile_seq = d_meta + tl.offset;
  m.tile_first = m.tile_seq + tl.seq.size();
  m.tile_count = m.tile_first + tl.seq.size();
  m.num_tiles = static_cast<int>(tl.seq.size());
  m.tile_tokens = tile_size;
  // Bidirectional image spans on sliding layers only; global layers stay causal (§4.6).
  if (lc.kind == LayerKind::kSliding) m.key_limit = d_key_limit;
  cuda::AttentionLayer al;
  al.heads = config.num_heads;
  al.kv_heads = lc.num_kv_heads;
  al.head_dim = d;
  al.window = lc.kind == LayerKind::kSliding ? config.sliding_window : 0;
  al.block_size = spec.block_size;
  al.kv_dtype = kv_dtype;
  al.k_cache = k_cache[static_cast<size_t>(l)].get();
  al.v_cache = v_cache[static_cast<size_t>(l)].get();
  al.k_scale = k_scale[static_cast<size_t>(l)].get<float>();
  al.v_scale = v_scale[static_cast<size_t>(l)].get<float>();
  const bool decode_tiles =
      tile_size == cuda::AttentionTileTokens(config.num_heads / lc.num_kv_heads, true);
  const int splits = AttentionSplits(m.num_tiles, al.kv_heads, d, al.window, decode_tiles);
  float* partial = nullptr;
  if (splits > 1) {
    const size_t need = cuda::AttentionPartialFloats(al, m, T, splits);
    GS_RETURN_IF_ERROR(Grow(s.partial, need * sizeof(float), "attention partials"));
    partial = Ptr<float>(s.partial);
  }
  // Launches from here on (the scratch is in place: between the folded router's two halves
  // nothing but a launch can fail).
  if (folded_step_) GS_RETURN_IF_ERROR(FoldedRouterStart(l));
  const int qkv_rows = L.q_rows + L.k_rows + L.v_rows;
  if (!ProfileSkips("qkv")) {
    GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.x), T, H, L.qkv.get<bf16>(), qkv_rows, s.qkv.get(),
                                true, 1.0f, stream));
  }
  if (ProfileSkips("attn")) {
    // profiling: no attention
  } else if (decode_step_ && FusedQkAttention()) {
    // Decode steps: qk-norm/RoPE, the KV append and the attention in one kernel (q/k/v bf16 are
    // not materialised: nothing else reads them on decode steps).
    cuda::QkvNormRopeSource src;
    src.qkv = Ptr<float>(s.qkv);
    src.k_eq_v = lc.k_eq_v;
    src.q_norm = L.q_norm;
    src.k_norm = L.k_norm;
    src.inv_freq = L.inv_freq;
    src.eps = eps;
    GS_RETURN_IF_ERROR(cuda::LaunchDecodeAttentionFused(src, al, m, T, splits, partial,
                                                        split_counters.get<int>(),
                                                        Ptr<bf16>(s.attn), stream));
  } else {
    // Decode steps (one new token per sequence) write the cache in the qk-norm/RoPE kernel,
    // before the attention (LaunchQkvNormRopeKv says why that is safe only then); other steps
    // after it.
    if (decode_step_) {
      GS_RETURN_IF_ERROR(cuda::LaunchQkvNormRopeKv(
          Ptr<float>(s.qkv), T, config.num_heads, lc.k_eq_v, L.q_norm, L.k_norm, L.inv_freq, eps,
          al, m, Ptr<bf16>(s.q), Ptr<bf16>(s.k), Ptr<bf16>(s.v), stream));
    } else {
      GS_RETURN_IF_ERROR(cuda::LaunchQkvNormRope(
          Ptr<float>(s.qkv), T, config.num_heads, lc.num_kv_heads, d, lc.k_eq_v, L.q_norm,
          L.k_norm, L.inv_freq, meta.positions, eps, Ptr<bf16>(s.q), Ptr<bf16>(s.k),
          Ptr<bf16>(s.v), stream));
    }
    GS_RETURN_IF_ERROR(cuda::LaunchAttention(al, m, Ptr<bf16>(s.q), Ptr<bf16>(s.k),
                                             Ptr<bf16>(s.v), T, splits, partial,
                                             split_counters.get<int>(), Ptr<bf16>(s.attn),
                                             stream));
    if (!decode_step_) {
      GS_RETURN_IF_ERROR(cuda::LaunchKvWrite(al, m, Ptr<bf16>(s.k), Ptr<bf16>(s.v), T, stream));
    }
  }
  // Folded: the o projection's extra rows give the router's attention part (router_fold.cu).
  const int o_rows = folded_step_ ? H + 2 * config.num_experts : H;
  if (!ProfileSkips("oproj")) {
    GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.attn), T, L.q_rows, L.o.get<bf16>(), o_rows,
                                s.attn_out.get(), true, 1.0f, stream));
  }
  if (ProfileSkips("post")) return Ok();
  if (folded_step_) {
    // No event join here (it would cost the kernel its PDL launch): it waits for the A kernel's
    // count itself; Kernels() joins the side stream once, at the end of the step.
    return cuda::LaunchPostAttentionRouted(
        Ptr<float>(s.h), Ptr<float>(s.attn_out), H, config.num_experts, Ptr<float>(s.router_a),
        fold_done.get<int>() + l, L.post_attn, L.pre_ffn, L.pre_ffn_2, eps, Ptr<bf16>(s.x_dense),
        Ptr<bf16>(s.x_moe), Ptr<float>(s.router_logits), config.top_k_experts, L.per_expert_scale, d_valid_tokens,
        Ptr<int>(s.topk_ids), Ptr<float>(s.topk_w), active_counts.get<int>() + l, stream);
  }
  const bool moe = config.enable_moe_block;
  return cuda::LaunchPostAttention(Ptr<float>(s.h), Ptr<float>(s.attn_out), T, H, L.post_attn,
                                   L.pre_ffn, L.pre_ffn_2, L.router_scale, eps,
                                   Ptr<bf16>(s.x_dense), moe ? Ptr<bf16>(s.x_moe) : nullptr,
                                   moe ? Ptr<float>(s.router_in) : nullptr, stream);
}

// The folded router's h part, A = router_h · h (router_fold.cu), on the side stream while the
// layer's attention runs; the post-attention kernel waits for its count (fold_done) and resets
// it. Attention() grows its scratch before this launch, so only launches lie between the two
// (q/k/v, attention, o), and they fail on argument checks, which fail every step alike, or on a
// sticky CUDA error: a count is never left up for a later step that runs.
Status CudaRunner::Impl::FoldedRouterStart(int l) {
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  GS_CUDA_RETURN_IF_ERROR(cudaEventRecord(router_fork, stream));
  GS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side, router_fork, 0));
  GS_RETURN_IF_ERROR(cuda::LaunchRouterFoldH(Ptr<float>(s.h), config.hidden_size,
                                             L.router_h.get<float>(), config.num_experts,
                                             Ptr<float>(s.router_a), fold_done.get<int>() + l,
                                             side));
  GS_CUDA_RETURN_IF_ERROR(cudaEventRecord(router_join, side));
  return Ok();
}

// A folded-router step's feed-forward: the post-attention kernel has chosen the token's experts
// (ungrouped: GemmRows::one_token_slots), so the dense MLP and the experts run as one grid per
// projection (LaunchPackedGemvPair) on the main stream, then the combine.
Status CudaRunner::Impl::FeedforwardFolded(int l) {
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const int H = config.hidden_size, k = config.top_k_experts;
  const int I = L.expert_down.view.cols, dense_inter = L.mlp_down.view.cols;
  cuda::GemmRows dense;
  dense.m = 1;
  cuda::GemmRows slots;
  slots.active = Ptr<int>(s.topk_ids);
  slots.max_active = k;
  slots.one_token_slots = true;
  slots.m = 1;
  slots.in_div = k;  // every slot reads the token's x_moe row
  GS_RETURN_IF_ERROR(cuda::LaunchPackedGemvPair(
      L.mlp_gate_up.view, dense, Ptr<bf16>(s.x_dense), H, s.inter_dense.get(), dense_inter,
      L.expert_gate_up.view, slots, Ptr<bf16>(s.x_moe), H, s.inter_moe.get(), I,
      cuda::GemmEpilogue::kGluBf16, stream));
  slots.in_div = 1;
  slots.row_weight = Ptr<float>(s.topk_w);
  slots.routing_settled = true;  // the post-attention kernel chose them two kernels back
  GS_RETURN_IF_ERROR(cuda::LaunchPackedGemvPair(
      L.mlp_down.view, dense, Ptr<bf16>(s.inter_dense), dense_inter, s.dense_out.get(), H,
      L.expert_down.view, slots, Ptr<bf16>(s.inter_moe), I, s.slot_out.get(), H,
      cuda::GemmEpilogue::kStoreF32, stream));
  return Combine(l, 1, Ptr<float>(s.slot_out));
}

// Dense MLP and MoE on the post-attention residual h1 (in s.h), then the combine into h.
Status CudaRunner::Impl::Feedforward(int l, int T) {
  if (folded_step_) return FeedforwardFolded(l);
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const int H = config.hidden_size;
  // The dense MLP runs on the side stream, beside the router and the experts: at small batches
  // neither fills the GPU alone. The join below orders it before the combine.
  const bool dense_mlp = !ProfileSkips("dense");
  if (dense_mlp) {
    GS_CUDA_RETURN_IF_ERROR(cudaEventRecord(fork, stream));
    GS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side, fork, 0));
    cuda::GemmRows dense;
    dense.m = T;
    // The packed width (down's K): the intermediate size padded to whole k-blocks with zeros.
    const int dense_inter = L.mlp_down.view.cols;
    GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.mlp_gate_up.view, dense, Ptr<bf16>(s.x_dense), H,
                                              s.inter_dense.get(), dense_inter,
                                              cuda::GemmEpilogue::kGluBf16, side));
    GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.mlp_down.view, dense, Ptr<bf16>(s.inter_dense),
                                              dense_inter, s.dense_out.get(), H,
                                              cuda::GemmEpilogue::kStoreF32, side));
    GS_CUDA_RETURN_IF_ERROR(cudaEventRecord(join, side));
  }
  const float* slot_out = nullptr;
  if (config.enable_moe_block) {
    const int E = config.num_experts, k = config.top_k_experts, I = L.expert_down.view.cols;
    const bool skip_router = ProfileSkips("router");
    int* active_count = active_counts.get<int>() + (skip_router ? 0 : l);
    // Router in fp32: logits = router_in · Wᵀ (router_in from LaunchPostAttention), then top-k
    // and the grouping of slots by expert. Padding tokens of a decode bucket (beyond
    // *d_valid_tokens) join no expert.
    // Up to 8 tokens it is one launch (the last block of the logits GEMV selects).
    if (skip_router && l > 0) {
      // profiling: layer 0's routing
    } else if (T <= cuda::kRouterGemvTokens) {
      GS_RETURN_IF_ERROR(cuda::LaunchRouterDecode(
          Ptr<float>(s.router_in), T, H, L.router.get<float>(), E, k, L.per_expert_scale,
          d_valid_tokens, Ptr<float>(s.router_logits), Ptr<int>(s.topk_ids), Ptr<float>(s.topk_w),
          Ptr<int>(s.offsets), Ptr<int>(s.entries), Ptr<int>(s.active), active_count,
          router_done.get<int>() + l, stream));
    } else {
      GS_RETURN_IF_ERROR(gemm.RunF32(Ptr<float>(s.router_in), T, H, L.router.get<float>(), E,
                                     Ptr<float>(s.router_logits), stream));
      GS_RETURN_IF_ERROR(cuda::LaunchRouterSelect(
          Ptr<float>(s.router_logits), T, E, k, L.per_expert_scale, d_valid_tokens,
          Ptr<int>(s.topk_ids), Ptr<float>(s.topk_w), Ptr<int>(s.offsets), Ptr<int>(s.entries),
          Ptr<int>(s.active), active_count, stream));
    }
    cuda::GemmRows rows;
    rows.active = Ptr<int>(s.active);
    rows.active_count = active_count;
    rows.max_active = std::min(E, T * k);
    rows.offsets = Ptr<int>(s.offsets);
    rows.entries = Ptr<int>(s.entries);
    rows.m = T;  // an expert sees each token at most once
    rows.in_div = k;
    if (!ProfileSkips("experts")) {
      GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.expert_gate_up.view, rows, Ptr<bf16>(s.x_moe),
                                                H, s.inter_moe.get(), I,
                                                cuda::GemmEpilogue::kGluBf16, stream));
      rows.in_div = 1;
      rows.row_weight = Ptr<float>(s.topk_w);
      rows.routing_settled = true;  // the router ran before gate/up
      GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.expert_down.view, rows,
                                                Ptr<bf16>(s.inter_moe), I, s.slot_out.get(), H,
                                                cuda::GemmEpilogue::kStoreF32, stream));
    }
    slot_out = Ptr<float>(s.slot_out);
  }
  if (dense_mlp) GS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, join, 0));
  return Combine(l, T, slot_out);
}

// The FFN combine of layer l's T rows into h (slot_out: the experts' slots, or null without MoE);
// it also writes the next layer's normalized input (s.x) when there is one.
Status CudaRunner::Impl::Combine(int l, int T, const float* slot_out) {
  if (ProfileSkips("combine")) return Ok();
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const bool last = l + 1 == config.num_layers;
  const float* next_norm = last ? nullptr : model.layers[static_cast<size_t>(l) + 1].input_norm;
  return cuda::LaunchFfnCombine(Ptr<float>(s.h), Ptr<float>(s.dense_out), slot_out,
                                config.top_k_experts, T, config.hidden_size, L.post1, L.post2,
                                L.post, L.layer_scalar, static_cast<float>(config.rms_norm_eps),
                                next_norm, last ? nullptr : Ptr<bf16>(s.x), stream);
}

// Final norm of the requested rows, tied lm_head (fp32 out), then softcap (in place: sampling and
// Forward read the logits after the step) and greedy argmax in one pass.
Status CudaRunner::Impl::Logits(const Batch& b) {
  const int R = static_cast<int>(b.logits_indices.size()), H = config.hidden_size;
  GS_RETURN_IF_ERROR(cuda::LaunchRmsNorm(Ptr<float>(s.h), d_logit_rows, R, H,
                                         model.final_norm.get<float>(),
                                         static_cast<float>(config.rms_norm_eps),
                                         Ptr<bf16>(s.x_logits), stream));
  if (ProfileSkips("lmhead")) {  // profiling: zero logits (argmax 0, a valid token)
    GS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(
        s.logits.get(), 0, sizeof(float) * static_cast<size_t>(R) * config.vocab_size, stream));
  } else {
    GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.x_logits), R, H, model.embed.get<bf16>(),
                                config.vocab_size, s.logits.get(), true, 1.0f, stream));
  }
  return cuda::LaunchSoftcapArgmax(Ptr<float>(s.logits), R, config.vocab_size,
                                   static_cast<float>(config.final_logit_softcapping),
                                   Ptr<int>(s.argmax), s.argmax_scratch.get(),
                                   s.argmax_scratch.bytes(), stream);
}

// Every kernel of one step, embedding to greedy argmax, on `stream` (capturable).
Status CudaRunner::Impl::Kernels(const Batch& b) {
  GS_RETURN_IF_ERROR(cuda::LaunchEmbed(d_token_ids, tokens_, model.embed.get<bf16>(),
                                       config.hidden_size, embed_scale, Ptr<float>(s.h), stream));
  // Image soft tokens replace their rows' embeddings (unscaled). Never inside a graph capture:
  // steps with images are not decode steps.
  const size_t H = static_cast<size_t>(config.hidden_size);
  for (const BatchImageSpan& span : b.image_spans) {
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(Ptr<float>(s.h) + span.first_token * H,
                                            span.embeddings.data(),
                                            span.embeddings.size() * sizeof(float),
                                            cudaMemcpyHostToDevice, stream));
  }
  for (int l = 0; l < config.num_layers; ++l) {
    GS_RETURN_IF_ERROR(Attention(l));
    GS_RETURN_IF_ERROR(Feedforward(l, tokens_));
  }
  // The folded router's side-stream kernels, joined once (a capture must rejoin its streams).
  if (folded_step_) GS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, router_join, 0));
  // A prefill chunk that ends before any sequence's last prompt token wants no logits.
  if (b.logits_indices.empty()) return Ok();
  return Logits(b);
}

namespace {

constexpr int kGraphBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128};

// A pure decode step: one token per sequence, the logits of each in order.
bool IsDecode(const Batch& b) {
  if (b.logits_indices.size() != b.sequences.size() || !b.image_spans.empty()) return false;
  for (size_t i = 0; i < b.sequences.size(); ++i) {
    if (b.sequences[i].num_tokens != 1 || b.logits_indices[i] != static_cast<int32_t>(i)) {
      return false;
    }
  }
  return true;
}

}  // namespace

// Decode steps are padded to a batch bucket with dummy sequences (in the spare KV slot and block;
// they join no expert) and run as one CUDA graph per bucket: a bucket's first step runs eagerly
// (so every lazily built plan and buffer exists), the second captures the graph, later ones
// replay it. With enforce_eager the padded step runs kernel by kernel.
Status CudaRunner::Impl::Step(const Batch& b) {
  GS_RETURN_IF_ERROR(CheckBatch(b));
  int bucket = 0;
  if (IsDecode(b)) {
    for (int size : kGraphBuckets) {
      if (size >= static_cast<int>(b.sequences.size())) {
        bucket = size;
        break;
      }
    }
  }
  decode_step_ = bucket != 0;
  folded_step_ = bucket == 1 && RouterFolded();
  if (bucket == 0) {
    tokens_ = b.num_tokens();
    GS_RETURN_IF_ERROR(EnsureScratch(tokens_, Rows(b)));
    GS_RETURN_IF_ERROR(UploadMeta(b, tokens_));
    return Kernels(b);
  }
  Batch padded = b;
  for (int i = static_cast<int>(b.sequences.size()); i < bucket; ++i) {
    BatchSequence pad;
    pad.slot = spec.max_sequences;              // the spare slot
    pad.block_table = {spec.num_global_blocks};  // and block
    pad.first_token = i;
    pad.num_tokens = 1;
    pad.start_position = 0;
    padded.sequences.push_back(std::move(pad));
    padded.token_ids.push_back(0);
    padded.logits_indices.push_back(i);
  }
  tokens_ = bucket;
  GS_RETURN_IF_ERROR(EnsureScratch(bucket, bucket));
  GS_RETURN_IF_ERROR(UploadMeta(padded, b.num_tokens()));
  // Eager decode runs the same padded step kernel by kernel: identical results either way.
  return enforce_eager ? Kernels(padded) : LaunchGraph(bucket, padded);
}

Status CudaRunner::Impl::LaunchGraph(int bucket, const Batch& padded) {
  auto it = graphs.find(bucket);
  if (it != graphs.end() && it->second.epoch != epoch_) {
    cudaGraphExecDestroy(it->second.exec);
    graphs.erase(it);
    it = graphs.end();
  }
  if (it == graphs.end()) {
    if (bucket_seen[bucket]++ == 0) return Kernels(padded);  // warm-up step, eager
    const uint64_t epoch = epoch_;
    GS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const Status st = Kernels(padded);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    GS_RETURN_IF_ERROR(st);
    GS_CUDA_RETURN_IF_ERROR(end);
    Graph g;
    g.epoch = epoch;
    const cudaError_t inst = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    GS_CUDA_RETURN_IF_ERROR(inst);
    ++graph_captures_;
    if (epoch != epoch_) {  // a buffer moved while capturing: this graph would use a freed one
      cudaGraphExecDestroy(g.exec);
      return Kernels(padded);
    }
    it = graphs.emplace(bucket, g).first;
  }
  ++graph_launches_;
  GS_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second.exec, stream));
  return Ok();
}

CudaRunner::CudaRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaRunner::~CudaRunner() = default;

const ModelConfig& CudaRunner::config() const { return impl_->config; }
const KvCacheSpec& CudaRunner::kv_spec() const { return impl_->spec; }
int64_t CudaRunner::weight_bytes() const { return impl_->model.total_bytes; }
std::string CudaRunner::device_name() const { return impl_->device_name; }
float CudaRunner::embed_scale() const { return impl_->embed_scale; }
std::string CudaRunner::kv_cache_dtype() const {
  return impl_->kv_dtype == cuda::KvDtype::kFp8E4m3 ? "fp8" : "bf16";
}
void CudaRunner::set_enforce_eager(bool eager) { impl_->enforce_eager = eager; }
int CudaRunner::graph_launches() const { return impl_->graph_launches_; }
int CudaRunner::graph_captures() const { return impl_->graph_captures_; }

Status CudaRunner::Forward(const Batch& batch, std::vector<float>* logits) {
  GS_RETURN_IF_ERROR(impl_->Step(batch));
  const size_t n = batch.logits_indices.size() * static_cast<size_t>(impl_->config.vocab_size);
  logits->resize(n);
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), impl_->s.logits.get(), n * sizeof(float),
                                          cudaMemcpyDeviceToHost, impl_->stream));
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream));
  return Ok();
}

Status CudaRunner::ForwardGreedy(const Batch& batch, std::vector<int32_t>* ids) {
  GS_RETURN_IF_ERROR(impl_->Step(batch));
  const int R = static_cast<int>(batch.logits_indices.size());
  ids->resize(static_cast<size_t>(R));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids->data(), impl_->s.argmax.get(), R * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, impl_->stream));
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream));
  return Ok();
}

bool CudaRunner::supports_vision() const { return impl_->vision != nullptr; }

int64_t CudaRunner::vision_weight_bytes() const {
  return impl_->vision ? impl_->vision->weight_bytes() : 0;
}

Expected<std::vector<std::vector<float>>> CudaRunner::EncodeImages(
    const std::vector<const ProcessedImage*>& images) {
  if (!impl_->vision) {
    return MakeError(impl_->config.vision
                         ? "the checkpoint's vision tower was not loaded: image input is off"
                         : "the model has no vision_config: it takes no images");
  }
  return impl_->vision->Encode(images);
}

Expected<std::vector<float>> CudaRunner::EncodeImage(const ProcessedImage& image) {
  GS_ASSIGN_OR_RETURN(auto soft, EncodeImages({&image}));
  return std::move(soft[0]);
}

Status CudaRunner::ForwardSample(const Batch& batch, const std::vector<GpuSamplingParams>& per_row,
                                 std::vector<int32_t>* ids, std::vector<float>* logprobs,
                                 std::vector<float>* logits) {
  Impl& m = *impl_;
  const size_t R = batch.logits_indices.size();
  if (per_row.size() != R) {
    return MakeError("ForwardSample: ", per_row.size(), " sampling rows for ", R, " logits rows");
  }
  for (size_t r = 0; r < R; ++r) {
    const GpuSamplingParams& g = per_row[r];
    if (!std::isfinite(g.temperature) || g.top_k < 0 || !(g.top_p > 0.0f) ||
        !(g.min_p >= 0.0f && g.min_p <= 1.0f)) {
      return MakeError("ForwardSample: row ", r, " has invalid sampling parameters (temperature ",
                       g.temperature, ", top_k ", g.top_k, ", top_p ", g.top_p, ", min_p ",
                       g.min_p, ")");
    }
  }
  GS_RETURN_IF_ERROR(m.Step(batch));
  std::vector<cuda::SampleRowParams> params(R);
  for (size_t r = 0; r < R; ++r) {
    const GpuSamplingParams& g = per_row[r];
    params[r] = {g.temperature, g.top_k, g.top_p, g.min_p, g.seed, g.step};
  }
  const size_t param_bytes = R * sizeof(cuda::SampleRowParams);
  const size_t result_bytes = R * (sizeof(int32_t) + sizeof(float));
  GS_RETURN_IF_ERROR(m.sample_host.Reserve(std::max(param_bytes, result_bytes)));
  std::copy(params.begin(), params.end(), m.sample_host.get<cuda::SampleRowParams>());
  GS_RETURN_IF_ERROR(m.s.sample_params.Reserve(param_bytes, "sampling parameters"));
  GS_RETURN_IF_ERROR(m.s.sample_ids.Reserve(R * sizeof(int32_t), "sampled ids"));
  GS_RETURN_IF_ERROR(m.s.sample_logprobs.Reserve(R * sizeof(float), "sampled logprobs"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(m.s.sample_params.get(), m.sample_host.get(),
                                          param_bytes, cudaMemcpyHostToDevice, m.stream));
  const int vocab = m.config.vocab_size;
  GS_RETURN_IF_ERROR(cuda::LaunchSample(
      m.s.logits.get<float>(), static_cast<int>(R), vocab,
      m.s.sample_params.get<cuda::SampleRowParams>(), m.s.sample_ids.get<int>(),
      logprobs ? m.s.sample_logprobs.get<float>() : nullptr, m.stream));
  // The results land in the pinned buffer behind the parameters' upload (stream order).
  int32_t* host_ids = m.sample_host.get<int32_t>();
  float* host_lp = reinterpret_cast<float*>(host_ids + R);
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_ids, m.s.sample_ids.get(), R * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, m.stream));
  if (logprobs) {
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_lp, m.s.sample_logprobs.get(), R * sizeof(float),
                                            cudaMemcpyDeviceToHost, m.stream));
  }
  if (logits) {
    logits->resize(R * static_cast<size_t>(vocab));
    GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), m.s.logits.get(),
                                            logits->size() * sizeof(float),
                                            cudaMemcpyDeviceToHost, m.stream));
  }
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(m.stream));
  ids->assign(host_ids, host_ids + R);
  if (logprobs) logprobs->assign(host_lp, host_lp + R);
  return Ok();
}

Status CudaRunner::CopySlot(int src, int dst) {
  Impl& m = *impl_;
  if (src < 0 || dst < 0 || src >= m.spec.max_sequences || dst >= m.spec.max_sequences) {
    return MakeError("CopySlot: slots ", src, " -> ", dst, " outside [0, ", m.spec.max_sequences,
                     ")");
  }
  if (src == dst) return Ok();
  for (size_t l = 0; l < m.config.layers.size(); ++l) {
    const LayerConfig& lc = m.config.layers[l];
    if (lc.kind != LayerKind::kSliding) continue;
    const bool fp8 = m.kv_dtype == cuda::KvDtype::kFp8E4m3;
    const size_t rows = static_cast<size_t>(m.config.sliding_window) * lc.num_kv_heads;
    const size_t ring = rows * lc.head_dim * (fp8 ? 1 : sizeof(bf16));
    for (DeviceBuffer* cache : {&m.k_cache[l], &m.v_cache[l]}) {
      uint8_t* base = cache->get<uint8_t>();
      GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(base + ring * dst, base + ring * src, ring,
                                              cudaMemcpyDeviceToDevice, m.stream));
    }
    if (fp8) {
      const size_t scales = rows * sizeof(float);
      for (DeviceBuffer* cache : {&m.k_scale[l], &m.v_scale[l]}) {
        uint8_t* base = cache->get<uint8_t>();
        GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(base + scales * dst, base + scales * src, scales,
                                                cudaMemcpyDeviceToDevice, m.stream));
      }
    }
  }
  // Ordered before the next step on the same stream; synchronized so the caller may reuse src.
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(m.stream));
  return Ok();
}

Expected<int64_t> CudaRunner::LastStepWeightBytes() {
  std::vector<int> active(impl_->config.layers.size());
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(active.data(), impl_->active_counts.get(),
                                     active.size() * sizeof(int), cudaMemcpyDeviceToHost));
  return impl_->model.StepWeightBytes(impl_->config, active, impl_->folded_step_);
}

namespace {

Expected<std::unique_ptr<CudaRunner::Impl>> NewImpl(const ModelConfig& config,
                                                    const KvCacheSpec& spec,
                                                    const CudaRunnerOptions& options) {
  std::string why;
  if (CudaDeviceCount(&why) <= options.device) {
    return MakeError("no CUDA device ", options.device, ": ", why.empty() ? "too few devices" : why);
  }
  auto impl = std::make_unique<CudaRunner::Impl>();
  impl->config = config;
  impl->spec = spec;
  GS_RETURN_IF_ERROR(impl->Init(options));
  return impl;
}

}  // namespace

Expected<std::unique_ptr<CudaRunner>> CreateCudaRunner(const ModelConfig& config,
                                                       const Gemma4Weights& weights,
                                                       const KvCacheSpec& spec,
                                                       const CudaRunnerOptions& options) {
  GS_ASSIGN_OR_RETURN(auto impl, NewImpl(config, spec, options));
  GS_ASSIGN_OR_RETURN(impl->model, cuda::UploadModel(config, weights));
  if (config.vision && weights.store) {
    auto bound = BindVisionWeights(config, weights.store);
    if (bound.ok()) {
      GS_ASSIGN_OR_RETURN(impl->vision, cuda::VisionEncoder::Upload(config, *bound));
    } else {
      std::fprintf(stderr, "image input off: %s\n", bound.error().message.c_str());
    }
  }
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::make_unique<CudaRunner>(std::move(impl));
}

Expected<std::unique_ptr<CudaRunner>> CreateDummyCudaRunner(const ModelConfig& config,
                                                            const KvCacheSpec& spec,
                                                            const CudaRunnerOptions& options,
                                                            uint64_t seed) {
  GS_ASSIGN_OR_RETURN(auto impl, NewImpl(config, spec, options));
  GS_ASSIGN_OR_RETURN(impl->model, cuda::MakeDummyModel(config, seed));
  if (config.vision) {
    GS_ASSIGN_OR_RETURN(impl->vision, cuda::VisionEncoder::Random(config, seed + 7919));
  }
  return std::make_unique<CudaRunner>(std::move(impl));
}

int CudaDeviceCount(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = StrCat(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    return 0;
  }
  if (n == 0 && why) *why = "cudaGetDeviceCount found no device";
  return n;
}

}  // namespace gs
