#include "runtime/cpu/cpu_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/cpu/bf16_rounding.h"
#include "runtime/cpu/cpu_attention.h"
#include "runtime/cpu/cpu_moe.h"
#include "runtime/cpu/cpu_ops.h"
#include "runtime/cpu/cpu_vision.h"
#include "util/numeric_formats.h"

namespace gs {

CpuRunner::CpuRunner(ModelConfig config, Gemma4Weights weights, KvCacheSpec spec,
                     CpuRunnerOptions options)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      spec_(spec),
      embed_scale_(options.embed_scale > 0
                       ? options.embed_scale
                       : RoundToBf16(std::sqrt(static_cast<float>(config_.hidden_size)))),
      options_(options),
      pool_(std::make_unique<ThreadPool>(options.num_threads)),
      cache_(config_, spec_) {
  for (const LayerConfig& lc : config_.layers) {
    inv_freq_.push_back(lc.rope.InverseFrequencies(lc.head_dim));
  }
}

void CpuRunner::Round(uint32_t point, float* x, size_t n) const {
  const uint32_t single = options_.bf16_round_points, pair = options_.bf16_pair_points;
  cpu::RoundInPlace(x, n, cpu::ModeOf(point, single, pair));
}

Status CpuRunner::CheckBatch(const Batch& b) const {
  int expected_first = 0;
  for (const BatchSequence& s : b.sequences) {
    if (s.first_token != expected_first || s.num_tokens <= 0) {
      return MakeError("batch: sequences must cover the tokens contiguously and in order");
    }
    expected_first += s.num_tokens;
    if (s.slot < 0 || s.slot >= spec_.max_sequences) {
      return MakeError("batch: KV slot ", s.slot, " is outside [0, ", spec_.max_sequences, ")");
    }
    const int64_t end = int64_t{s.start_position} + s.num_tokens;
    if (s.start_position < 0 || end > config_.max_position_embeddings) {
      return MakeError("batch: positions up to ", end, " exceed max_position_embeddings ",
                       config_.max_position_embeddings);
    }
    const int64_t blocks = (end + spec_.block_size - 1) / spec_.block_size;
    if (config_.num_layers_of(LayerKind::kGlobal) > 0 &&
        static_cast<int64_t>(s.block_table.size()) < blocks) {
      return MakeError("batch: block table of slot ", s.slot, " has ", s.block_table.size(),
                       " blocks, ", blocks, " needed");
    }
    for (int32_t blk : s.block_table) {
      if (blk < 0 || blk >= spec_.num_global_blocks) {
        return MakeError("batch: KV block ", blk, " is outside the pool of ", spec_.num_global_blocks);
      }
    }
  }
  if (expected_first != b.num_tokens()) return MakeError("batch: tokens not covered by sequences");
  for (int32_t id : b.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return MakeError("batch: token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")");
    }
  }
  for (int32_t i : b.logits_indices) {
    if (i < 0 || i >= b.num_tokens()) return MakeError("batch: logits index ", i, " out of range");
  }
  return CheckImageSpans(b, config_.hidden_size);
}

Status CpuRunner::AttachVision(VisionWeights vision) {
  if (!config_.vision) return MakeError("the model has no vision_config: it takes no images");
  vision_ = std::move(vision);
  return Ok();
}

Expected<std::vector<float>> CpuRunner::EncodeImage(const ProcessedImage& image) {
  if (!vision_) {
    return MakeError(config_.vision ? "the vision weights were not loaded (CpuRunner::AttachVision)"
                                    : "the model has no vision_config: it takes no images");
  }
  return cpu::EncodeImage(config_, *vision_, image, *pool_);
}

Status CpuRunner::Forward(const Batch& batch, std::vector<float>* logits) {
  GS_RETURN_IF_ERROR(CheckBatch(batch));
  const int tokens = batch.num_tokens(), hsz = config_.hidden_size;
  std::vector<float> h(static_cast<size_t>(tokens) * hsz);
  Embed(batch, h.data());
  for (int l = 0; l < config_.num_layers; ++l) RunLayer(l, batch, h.data());
  Logits(batch, h.data(), logits);
  return Ok();
}

Status CpuRunner::CopySlot(int src, int dst) {
  for (int slot : {src, dst}) {
    if (slot < 0 || slot >= spec_.max_sequences) {
      return MakeError("CopySlot: KV slot ", slot, " is outside [0, ", spec_.max_sequences, ")");
    }
  }
  if (src != dst) cache_.CopySlot(src, dst);
  return Ok();
}

// h0 = E[token] · embed_scale (the bf16 model multiplies by bf16(√H), reference §3.2).
void CpuRunner::Embed(const Batch& batch, float* h) const {
  const int hsz = config_.hidden_size;
  for (int t = 0; t < batch.num_tokens(); ++t) {
    float* row = h + static_cast<size_t>(t) * hsz;
    weights_.embed.DequantizeRowUnscaled(batch.token_ids[static_cast<size_t>(t)], row);
    for (int i = 0; i < hsz; ++i) row[i] *= embed_scale_;
  }
  // Image soft tokens replace their placeholders after the scale and are not scaled (§3.2).
  for (const BatchImageSpan& s : batch.image_spans) {
    std::copy(s.embeddings.begin(), s.embeddings.end(), h + static_cast<size_t>(s.first_token) * hsz);
  }
}

// One decoder layer (reference §3.3):
//   h1 = h + post_attn_norm(attn(input_norm(h)))
//   h2 = h1 + post_ffn_norm(post_ffn_norm_1(mlp(pre_ffn_norm(h1))) + post_ffn_norm_2(moe(h1)))
//   h  = h2 · layer_scalar            (the whole stream, residual included)
void CpuRunner::RunLayer(int l, const Batch& batch, float* h) {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
  const int tokens = batch.num_tokens(), hsz = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const size_t n = static_cast<size_t>(tokens) * hsz;
  std::vector<float> x(h, h + n), a(n);
  cpu::RmsNorm(x.data(), tokens, hsz, w.input_norm, eps);
  Round(cpu::kBf16QkvInput, x.data(), n);
  Attention(l, batch, x.data(), a.data());
  cpu::RmsNorm(a.data(), tokens, hsz, w.post_attn_norm, eps);
  for (size_t i = 0; i < n; ++i) h[i] += a[i];
  Feedforward(l, tokens, h, a.data());
  for (size_t i = 0; i < n; ++i) h[i] = (h[i] + a[i]) * w.layer_scalar;
}

void CpuRunner::Attention(int l, const Batch& batch, const float* x, float* out) {
  const LayerConfig& lc = config_.layers[static_cast<size_t>(l)];
  const AttentionWeights& w = weights_.layers[static_cast<size_t>(l)].attn;
  const int tokens = batch.num_tokens(), d = lc.head_dim, heads = config_.num_heads;
  const int kv = lc.num_kv_heads;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  std::vector<float> q(static_cast<size_t>(tokens) * heads * d), k(static_cast<size_t>(tokens) * kv * d);
  std::vector<float> v(k.size()), o(q.size());
  cpu::Linear(w.q, x, tokens, q.data(), *pool_);
  cpu::Linear(w.k, x, tokens, k.data(), *pool_);
  // k_eq_v: V is the raw K projection, taken before k_norm and RoPE.
  if (lc.k_eq_v) v = k;
  else cpu::Linear(w.v, x, tokens, v.data(), *pool_);
  cpu::RmsNorm(q.data(), static_cast<int64_t>(tokens) * heads, d, w.q_norm, eps);
  cpu::RmsNorm(k.data(), static_cast<int64_t>(tokens) * kv, d, w.k_norm, eps);
  cpu::RmsNorm(v.data(), static_cast<int64_t>(tokens) * kv, d, {}, eps);
  for (const BatchSequence& s : batch.sequences) {
    for (int i = 0; i < s.num_tokens; ++i) {
      const size_t t = static_cast<size_t>(s.first_token + i);
      const int pos = s.start_position + i;
      for (int hh = 0; hh < heads; ++hh) cpu::ApplyRope(&q[(t * heads + hh) * d], d, pos, inv_freq_[l]);
      for (int hh = 0; hh < kv; ++hh) cpu::ApplyRope(&k[(t * kv + hh) * d], d, pos, inv_freq_[l]);
    }
  }
  Round(cpu::kBf16Q, q.data(), q.size());
  Round(cpu::kBf16K, k.data(), k.size());
  Round(cpu::kBf16V, v.data(), v.size());
  for (const BatchSequence& s : batch.sequences) {
    const size_t t0 = static_cast<size_t>(s.first_token);
    std::vector<std::pair<int, int>> blocks;  // this sequence's image spans, chunk-local
    for (const BatchImageSpan& span : batch.image_spans) {
      if (span.first_token >= s.first_token && span.first_token < s.first_token + s.num_tokens) {
        blocks.emplace_back(span.first_token - s.first_token,
                            span.first_token - s.first_token + span.num_tokens);
      }
    }
    cpu::AttentionChunk chunk{&lc, l, heads, config_.sliding_window, &s,
                              q.data() + t0 * heads * d, k.data() + t0 * kv * d,
                              v.data() + t0 * kv * d, blocks.empty() ? nullptr : &blocks};
    cpu::AttendAndCache(chunk, cache_, o.data() + t0 * heads * d, *pool_);
  }
  Round(cpu::kBf16AttnOutput, o.data(), o.size());
  cpu::Linear(w.o, o.data(), tokens, out, *pool_);
}

// Writes post_ffn_norm(dense + moe) into ffn_out; h1 is the post-attention residual.
void CpuRunner::Feedforward(int l, int tokens, float* h1, float* ffn_out) {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
  const int hsz = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const size_t n = static_cast<size_t>(tokens) * hsz;
  std::vector<float> x(h1, h1 + n);
  cpu::RmsNorm(x.data(), tokens, hsz, w.pre_ffn_norm, eps);
  Round(cpu::kBf16DenseInput, x.data(), n);
  const auto glu_mode = [&](uint32_t point) {
    return cpu::ModeOf(point, options_.bf16_round_points, options_.bf16_pair_points);
  };
  cpu::RunDenseMlp(w, x.data(), tokens, ffn_out, *pool_, glu_mode(cpu::kBf16DenseGlu));
  if (config_.enable_moe_block) {
    cpu::RmsNorm(ffn_out, tokens, hsz, w.post_ffn_norm_1, eps);
    std::vector<float> x2(h1, h1 + n), m(n);
    cpu::RmsNorm(x2.data(), tokens, hsz, w.pre_ffn_norm_2, eps);
    Round(cpu::kBf16ExpertInput, x2.data(), n);
    const std::vector<float> logits = cpu::RouterLogits(config_, w, h1, tokens, *pool_);
    std::vector<int> experts = cpu::TopExperts(config_, logits, tokens);
    if (options_.routing_hook) options_.routing_hook(l, logits, &experts);
    const cpu::Routing routing = cpu::WeighExperts(config_, w, logits, std::move(experts), tokens);
    cpu::RunExperts(config_, w, routing, x2.data(), tokens, m.data(), *pool_,
                    glu_mode(cpu::kBf16ExpertGlu));
    cpu::RmsNorm(m.data(), tokens, hsz, w.post_ffn_norm_2, eps);
    for (size_t i = 0; i < n; ++i) ffn_out[i] += m[i];
  }
  cpu::RmsNorm(ffn_out, tokens, hsz, w.post_ffn_norm, eps);
}

// Final norm, tied lm_head, softcap — only for the requested rows.
void CpuRunner::Logits(const Batch& batch, float* h, std::vector<float>* logits) {
  const int hsz = config_.hidden_size, vocab = config_.vocab_size;
  const int rows = static_cast<int>(batch.logits_indices.size());
  std::vector<float> x(static_cast<size_t>(rows) * hsz);
  for (int r = 0; r < rows; ++r) {
    std::memcpy(&x[static_cast<size_t>(r) * hsz], h + static_cast<size_t>(batch.logits_indices[r]) * hsz,
                sizeof(float) * hsz);
  }
  cpu::RmsNorm(x.data(), rows, hsz, weights_.final_norm, static_cast<float>(config_.rms_norm_eps));
  Round(cpu::kBf16LmHeadInput, x.data(), x.size());
  logits->assign(static_cast<size_t>(rows) * vocab, 0.0f);
  cpu::Linear(weights_.embed, x.data(), rows, logits->data(), *pool_);
  cpu::Softcap(*logits, static_cast<float>(config_.final_logit_softcapping));
}

}  // namespace gs
