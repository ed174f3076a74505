#include "runtime/cuda/cuda_runner.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "runtime/cuda/bf16_gemm.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/device_model.h"
#include "runtime/cuda/kernels.h"
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
  DeviceBuffer router_logits, topk_ids, topk_w, offsets, entries, active, inter_moe, slot_out, partial;
  DeviceBuffer x_logits, logits, argmax, meta;
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
  DeviceBuffer active_counts;  // [layers]: distinct experts of the last step
  Scratch s;
  cuda::PinnedBuffer meta_host;

  // This step's metadata (host copies and device pointers).
  std::map<int, TileList> tiles;  // by tile size
  cuda::AttentionMeta meta;
  const int* d_token_ids = nullptr;
  const int* d_logit_rows = nullptr;

  ~Impl() {
    if (stream) cudaStreamDestroy(stream);
  }

  Status Init(const CudaRunnerOptions& options);
  Status CheckBatch(const Batch& b) const;
  Status UploadMeta(const Batch& b);
  Status EnsureScratch(int tokens, int logit_rows);
  int AttentionSplits(const TileList& tl, const Batch& b, int window, int kv_heads) const;
  Status Attention(int l, const Batch& b);
  Status Feedforward(int l, int tokens);
  Status Step(const Batch& b);
  Status Logits(const Batch& b);

  int tokens_ = 0;
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

}  // namespace

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
  GS_RETURN_IF_ERROR(gemm.Init());
  embed_scale = options.embed_scale > 0
                    ? options.embed_scale
                    : RoundToBf16(std::sqrt(static_cast<float>(config.hidden_size)));
  for (const LayerConfig& lc : config.layers) {
    const int heads = config.num_heads;
    if (lc.num_kv_heads <= 0 || heads % lc.num_kv_heads != 0 || 16 % (heads / lc.num_kv_heads)) {
      return MakeError("CUDA attention needs a GQA group dividing 16; got ", heads, " heads over ",
                       lc.num_kv_heads, " kv heads");
    }
  }
  if (config.top_k_experts <= 0 && config.enable_moe_block) {
    return MakeError("config: enable_moe_block with top_k_experts ", config.top_k_experts);
  }
  // KV cache: sliding layers a ring of `window` positions per slot, global layers the paged pool.
  k_cache.resize(config.layers.size());
  v_cache.resize(config.layers.size());
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const LayerConfig& lc = config.layers[l];
    const size_t positions = lc.kind == LayerKind::kSliding
                                 ? static_cast<size_t>(spec.max_sequences) * config.sliding_window
                                 : static_cast<size_t>(spec.num_global_blocks) * spec.block_size;
    const size_t bytes = positions * lc.num_kv_heads * lc.head_dim * sizeof(bf16);
    GS_RETURN_IF_ERROR(k_cache[l].Allocate(bytes, "K cache"));
    GS_RETURN_IF_ERROR(v_cache[l].Allocate(bytes, "V cache"));
  }
  GS_RETURN_IF_ERROR(active_counts.Allocate(sizeof(int) * config.layers.size(), "expert counts"));
  GS_CUDA_RETURN_IF_ERROR(cudaMemset(active_counts.get(), 0, active_counts.bytes()));
  // Everything above ran on the legacy stream, which does not order with `stream`.
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Ok();
}

Status CudaRunner::Impl::CheckBatch(const Batch& b) const {
  if (!b.image_spans.empty()) return MakeError("batch: image input is not supported by the CUDA runner yet");
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
  if (b.logits_indices.empty()) return MakeError("batch: no logits requested");
  for (int32_t i : b.logits_indices) {
    if (i < 0 || i >= b.num_tokens()) return MakeError("batch: logits index ", i, " out of range");
  }
  return Ok();
}

// Packs every per-step integer array into one pinned buffer and uploads it with one copy.
Status CudaRunner::Impl::UploadMeta(const Batch& b) {
  const int T = b.num_tokens(), S = static_cast<int>(b.sequences.size());
  std::vector<int> buf;
  buf.reserve(static_cast<size_t>(8 * T + 8 * S));
  auto mark = [&] { return buf.size(); };
  const size_t o_ids = mark();
  buf.insert(buf.end(), b.token_ids.begin(), b.token_ids.end());
  const size_t o_pos = mark();
  buf.resize(buf.size() + 2 * static_cast<size_t>(T));
  const size_t o_tseq = o_pos + T;
  const size_t o_seq = mark();
  buf.resize(buf.size() + 5 * static_cast<size_t>(S));
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
    buf[o_seq + 4 * S + si] = static_cast<int>(buf.size());  // absolute; rebased below
    buf.insert(buf.end(), s.block_table.begin(), s.block_table.end());
  }
  const size_t o_rows = mark();
  buf.insert(buf.end(), b.logits_indices.begin(), b.logits_indices.end());
  tiles.clear();
  for (const LayerConfig& lc : config.layers) {
    const int size = 16 / (config.num_heads / lc.num_kv_heads);
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
  // Block tables are addressed relative to the table block.
  const size_t o_tables = o_seq + 5 * static_cast<size_t>(S);
  for (int si = 0; si < S; ++si) buf[o_seq + 4 * S + si] -= static_cast<int>(o_tables);

  const size_t bytes = buf.size() * sizeof(int);
  GS_RETURN_IF_ERROR(meta_host.Reserve(bytes));
  std::copy(buf.begin(), buf.end(), meta_host.get<int>());
  GS_RETURN_IF_ERROR(s.meta.Reserve(bytes, "step metadata"));
  GS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(s.meta.get(), meta_host.get(), bytes, cudaMemcpyHostToDevice, stream));
  const int* d = s.meta.get<int>();
  d_token_ids = d + o_ids;
  d_logit_rows = d + o_rows;
  meta = cuda::AttentionMeta{};
  meta.positions = d + o_pos;
  meta.token_seq = d + o_tseq;
  meta.seq_start = d + o_seq;
  meta.seq_first = d + o_seq + S;
  meta.seq_count = d + o_seq + 2 * S;
  meta.seq_slot = d + o_seq + 3 * S;
  meta.seq_table = d + o_seq + 4 * S;
  meta.block_tables = d + o_tables;
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
  GS_RETURN_IF_ERROR(s.h.Reserve(t * H * 4, "h"));
  GS_RETURN_IF_ERROR(s.x.Reserve(t * H * 2, "x"));
  GS_RETURN_IF_ERROR(s.qkv.Reserve(t * MaxQkvRows(model) * 4, "qkv"));
  GS_RETURN_IF_ERROR(s.q.Reserve(t * qd * 2, "q"));
  GS_RETURN_IF_ERROR(s.k.Reserve(t * kvd * 2, "k"));
  GS_RETURN_IF_ERROR(s.v.Reserve(t * kvd * 2, "v"));
  GS_RETURN_IF_ERROR(s.attn.Reserve(t * qd * 2, "attention output"));
  GS_RETURN_IF_ERROR(s.attn_out.Reserve(t * H * 4, "o_proj output"));
  GS_RETURN_IF_ERROR(s.x_dense.Reserve(t * H * 2, "dense MLP input"));
  GS_RETURN_IF_ERROR(s.x_moe.Reserve(t * H * 2, "expert input"));
  GS_RETURN_IF_ERROR(s.inter_dense.Reserve(t * c.intermediate_size * 2, "dense intermediate"));
  GS_RETURN_IF_ERROR(s.dense_out.Reserve(t * H * 4, "dense MLP output"));
  if (c.enable_moe_block) {
    GS_RETURN_IF_ERROR(s.router_logits.Reserve(t * E * 4, "router logits"));
    GS_RETURN_IF_ERROR(s.topk_ids.Reserve(slots * 4, "top-k ids"));
    GS_RETURN_IF_ERROR(s.topk_w.Reserve(slots * 4, "top-k weights"));
    GS_RETURN_IF_ERROR(s.offsets.Reserve((E + 1) * 4, "expert offsets"));
    GS_RETURN_IF_ERROR(s.entries.Reserve(slots * 4, "expert entries"));
    GS_RETURN_IF_ERROR(s.active.Reserve(E * 4, "active experts"));
    GS_RETURN_IF_ERROR(s.inter_moe.Reserve(slots * c.moe_intermediate_size * 2, "expert intermediate"));
    GS_RETURN_IF_ERROR(s.slot_out.Reserve(slots * H * 4, "expert outputs"));
  }
  GS_RETURN_IF_ERROR(s.x_logits.Reserve(static_cast<size_t>(R) * H * 2, "final norm"));
  GS_RETURN_IF_ERROR(s.logits.Reserve(static_cast<size_t>(R) * c.vocab_size * 4, "logits"));
  GS_RETURN_IF_ERROR(s.argmax.Reserve(static_cast<size_t>(R) * 4, "argmax"));
  return Ok();
}

// Flash-decoding split of each query's keys when the (tiles × kv heads) grid alone would leave
// most SMs idle: ≥ 64 keys per split, ≤ 32 splits.
int CudaRunner::Impl::AttentionSplits(const TileList& tl, const Batch& b, int window,
                                      int kv_heads) const {
  int max_keys = 0;
  for (size_t i = 0; i < tl.seq.size(); ++i) {
    const BatchSequence& s = b.sequences[static_cast<size_t>(tl.seq[i])];
    const int pos0 = s.start_position + (tl.first[i] - s.first_token);
    const int kend = pos0 + tl.count[i] - 1;
    const int kbeg = window > 0 ? std::max(0, pos0 - window + 1) : 0;
    max_keys = std::max(max_keys, kend - kbeg + 1);
  }
  const int blocks = static_cast<int>(tl.seq.size()) * kv_heads;
  const int sms = cuda::DeviceSmCount();
  if (blocks >= sms) return 1;
  const int by_keys = (max_keys + 63) / 64;
  const int by_grid = (2 * sms + blocks - 1) / blocks;
  return std::clamp(std::min(by_keys, by_grid), 1, 32);
}

Status CudaRunner::Impl::Attention(int l, const Batch& b) {
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const LayerConfig& lc = L.lc;
  const int T = tokens_, H = config.hidden_size, d = lc.head_dim;
  const float eps = static_cast<float>(config.rms_norm_eps);
  GS_RETURN_IF_ERROR(cuda::LaunchRmsNorm(Ptr<float>(s.h), nullptr, T, H, L.input_norm, eps,
                                         Ptr<bf16>(s.x), stream));
  const int qkv_rows = L.q_rows + L.k_rows + L.v_rows;
  GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.x), T, H, L.qkv.get<bf16>(), qkv_rows, s.qkv.get(), true,
                              1.0f, stream));
  GS_RETURN_IF_ERROR(cuda::LaunchQkvNormRope(
      Ptr<float>(s.qkv), T, config.num_heads, lc.num_kv_heads, d, lc.k_eq_v, L.q_norm, L.k_norm,
      L.inv_freq, meta.positions, eps, Ptr<bf16>(s.q), Ptr<bf16>(s.k), Ptr<bf16>(s.v), stream));

  const int tile_size = 16 / (config.num_heads / lc.num_kv_heads);
  const TileList& tl = tiles.at(tile_size);
  cuda::AttentionMeta m = meta;
  const int* d_meta = s.meta.get<int>();
  m.tile_seq = d_meta + tl.offset;
  m.tile_first = m.tile_seq + tl.seq.size();
  m.tile_count = m.tile_first + tl.seq.size();
  m.num_tiles = static_cast<int>(tl.seq.size());
  cuda::AttentionLayer al;
  al.heads = config.num_heads;
  al.kv_heads = lc.num_kv_heads;
  al.head_dim = d;
  al.window = lc.kind == LayerKind::kSliding ? config.sliding_window : 0;
  al.block_size = spec.block_size;
  al.k_cache = k_cache[static_cast<size_t>(l)].get<bf16>();
  al.v_cache = v_cache[static_cast<size_t>(l)].get<bf16>();
  const int splits = AttentionSplits(tl, b, al.window, al.kv_heads);
  float* partial = nullptr;
  if (splits > 1) {
    const size_t need = static_cast<size_t>(splits) * T * config.num_heads * (d + 2);
    GS_RETURN_IF_ERROR(s.partial.Reserve(need * sizeof(float), "attention partials"));
    partial = Ptr<float>(s.partial);
  }
  GS_RETURN_IF_ERROR(cuda::LaunchAttention(al, m, Ptr<bf16>(s.q), Ptr<bf16>(s.k), Ptr<bf16>(s.v), T,
                                           splits, partial, Ptr<bf16>(s.attn), stream));
  GS_RETURN_IF_ERROR(cuda::LaunchKvWrite(al, m, Ptr<bf16>(s.k), Ptr<bf16>(s.v), T, stream));
  GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.attn), T, L.q_rows, L.o.get<bf16>(), H, s.attn_out.get(),
                              true, 1.0f, stream));
  return cuda::LaunchPostAttention(Ptr<float>(s.h), Ptr<float>(s.attn_out), T, H, L.post_attn,
                                   L.pre_ffn, L.pre_ffn_2, eps, Ptr<bf16>(s.x_dense),
                                   config.enable_moe_block ? Ptr<bf16>(s.x_moe) : nullptr, stream);
}

// Dense MLP and MoE on the post-attention residual h1 (in s.h), then the combine into h.
Status CudaRunner::Impl::Feedforward(int l, int T) {
  const cuda::DeviceLayer& L = model.layers[static_cast<size_t>(l)];
  const int H = config.hidden_size;
  const float eps = static_cast<float>(config.rms_norm_eps);
  cuda::GemmRows dense;
  dense.m = T;
  GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.mlp_gate_up.view, dense, Ptr<bf16>(s.x_dense), H,
                                            s.inter_dense.get(), config.intermediate_size,
                                            cuda::GemmEpilogue::kGluBf16, stream));
  GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.mlp_down.view, dense, Ptr<bf16>(s.inter_dense),
                                            config.intermediate_size, s.dense_out.get(), H,
                                            cuda::GemmEpilogue::kStoreF32, stream));
  const float* slot_out = nullptr;
  if (config.enable_moe_block) {
    const int E = config.num_experts, k = config.top_k_experts, I = config.moe_intermediate_size;
    int* active_count = active_counts.get<int>() + l;
    GS_RETURN_IF_ERROR(cuda::LaunchRouter(Ptr<float>(s.h), T, H, L.router_scale,
                                          L.router.get<bf16>(), E, k, L.per_expert_scale, eps,
                                          Ptr<float>(s.router_logits), Ptr<int>(s.topk_ids), Ptr<float>(s.topk_w), stream));
    GS_RETURN_IF_ERROR(cuda::LaunchMoeGroup(Ptr<int>(s.topk_ids), T * k, E, Ptr<int>(s.offsets),
                                            Ptr<int>(s.entries), Ptr<int>(s.active), active_count,
                                            stream));
    cuda::GemmRows rows;
    rows.active = Ptr<int>(s.active);
    rows.active_count = active_count;
    rows.max_active = std::min(E, T * k);
    rows.offsets = Ptr<int>(s.offsets);
    rows.entries = Ptr<int>(s.entries);
    rows.m = T;  // an expert sees each token at most once
    rows.in_div = k;
    GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.expert_gate_up.view, rows, Ptr<bf16>(s.x_moe), H,
                                              s.inter_moe.get(), I, cuda::GemmEpilogue::kGluBf16,
                                              stream));
    rows.in_div = 1;
    rows.row_weight = Ptr<float>(s.topk_w);
    GS_RETURN_IF_ERROR(cuda::LaunchPackedGemm(L.expert_down.view, rows, Ptr<bf16>(s.inter_moe), I,
                                              s.slot_out.get(), H, cuda::GemmEpilogue::kStoreF32,
                                              stream));
    slot_out = Ptr<float>(s.slot_out);
  }
  return cuda::LaunchFfnCombine(Ptr<float>(s.h), Ptr<float>(s.dense_out), slot_out,
                                config.top_k_experts, T, H, L.post1, L.post2, L.post,
                                L.layer_scalar, eps, stream);
}

// Final norm of the requested rows, tied lm_head (fp32 out), softcap.
Status CudaRunner::Impl::Logits(const Batch& b) {
  const int R = static_cast<int>(b.logits_indices.size()), H = config.hidden_size;
  GS_RETURN_IF_ERROR(cuda::LaunchRmsNorm(Ptr<float>(s.h), d_logit_rows, R, H,
                                         model.final_norm.get<float>(),
                                         static_cast<float>(config.rms_norm_eps),
                                         Ptr<bf16>(s.x_logits), stream));
  GS_RETURN_IF_ERROR(gemm.Run(Ptr<bf16>(s.x_logits), R, H, model.embed.get<bf16>(),
                              config.vocab_size, s.logits.get(), true, 1.0f, stream));
  return cuda::LaunchSoftcap(Ptr<float>(s.logits), static_cast<int64_t>(R) * config.vocab_size,
                             static_cast<float>(config.final_logit_softcapping), stream);
}

Status CudaRunner::Impl::Step(const Batch& b) {
  GS_RETURN_IF_ERROR(CheckBatch(b));
  tokens_ = b.num_tokens();
  GS_RETURN_IF_ERROR(EnsureScratch(tokens_, static_cast<int>(b.logits_indices.size())));
  GS_RETURN_IF_ERROR(UploadMeta(b));
  GS_RETURN_IF_ERROR(cuda::LaunchEmbed(d_token_ids, tokens_, model.embed.get<bf16>(),
                                       config.hidden_size, embed_scale, Ptr<float>(s.h), stream));
  for (int l = 0; l < config.num_layers; ++l) {
    GS_RETURN_IF_ERROR(Attention(l, b));
    GS_RETURN_IF_ERROR(Feedforward(l, tokens_));
  }
  return Logits(b);
}

CudaRunner::CudaRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaRunner::~CudaRunner() = default;

const ModelConfig& CudaRunner::config() const { return impl_->config; }
const KvCacheSpec& CudaRunner::kv_spec() const { return impl_->spec; }
int64_t CudaRunner::weight_bytes() const { return impl_->model.total_bytes; }
std::string CudaRunner::device_name() const { return impl_->device_name; }
float CudaRunner::embed_scale() const { return impl_->embed_scale; }

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
  GS_RETURN_IF_ERROR(cuda::LaunchArgmax(impl_->s.logits.get<float>(), R,
                                        impl_->config.vocab_size, impl_->s.argmax.get<int>(),
                                        impl_->stream));
  ids->resize(static_cast<size_t>(R));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids->data(), impl_->s.argmax.get(), R * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, impl_->stream));
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream));
  return Ok();
}

Expected<int64_t> CudaRunner::LastStepWeightBytes() {
  std::vector<int> active(impl_->config.layers.size());
  GS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream));
  GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(active.data(), impl_->active_counts.get(),
                                     active.size() * sizeof(int), cudaMemcpyDeviceToHost));
  return impl_->model.StepWeightBytes(impl_->config, active);
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
  GS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::make_unique<CudaRunner>(std::move(impl));
}

Expected<std::unique_ptr<CudaRunner>> CreateDummyCudaRunner(const ModelConfig& config,
                                                            const KvCacheSpec& spec,
                                                            const CudaRunnerOptions& options,
                                                            uint64_t seed) {
  GS_ASSIGN_OR_RETURN(auto impl, NewImpl(config, spec, options));
  GS_ASSIGN_OR_RETURN(impl->model, cuda::MakeDummyModel(config, seed));
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
