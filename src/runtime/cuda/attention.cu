// Attention for prefill and decode (reference gemma4 §3.4): sliding layers (head_dim 256, window
// 1024, GQA group 2) and global layers (head_dim 512, k_eq_v, GQA group 8); scale 1.0, no softcap.
// KV cache per DESIGN §3: global layers in paged blocks through each sequence's block table,
// sliding layers in a ring of `window` positions per KV slot. This file picks the kernel
// (attention_decode.cu for tiles of ≤ 8 query rows, attention_prefill.cu otherwise) and merges
// the prefill kernel's flash-decoding splits (the decode kernel merges its own).
#include <algorithm>

#include "runtime/cuda/attention_internal.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace gs::cuda {
namespace {

// Merges the prefill kernel's splits of one (token, head): M = max m_z, w_z = e^(m_z − M),
// o = Σ w_z o_z / Σ w_z l_z.
__global__ void AttentionMergeKernel(const float* __restrict__ partial, int splits, int tokens,
                                     int heads, int d, bf16* __restrict__ out) {
  GridDependencyWait();  // PDL (launch.cuh)
  TriggerDependentsIfOneWave();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * heads + blockIdx.y;
  const int64_t split_stride = static_cast<int64_t>(tokens) * heads * (d + 2);
  const float* base = partial + row * (d + 2);
  float m = -INFINITY;
  for (int z = 0; z < splits; ++z) m = fmaxf(m, base[z * split_stride + d]);
  float l = 0.0f;
  for (int z = 0; z < splits; ++z) {
    const float mz = base[z * split_stride + d];
    if (mz != -INFINITY) l += __expf(mz - m) * base[z * split_stride + d + 1];
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float o = 0.0f;
    for (int z = 0; z < splits; ++z) {
      const float mz = base[z * split_stride + d];
      if (mz != -INFINITY) o += __expf(mz - m) * base[z * split_stride + c];
    }
    out[row * d + c] = __float2bfloat16_rn(o * inv);
  }
}

bool GroupSupported(int group) { return group == 1 || group == 2 || group == 4 || group == 8; }

}  // namespace

int AttentionTileTokens(int group, bool decode) {
  if (!GroupSupported(group)) return 0;
  return (decode ? DecodeTileRows() : PrefillTileRows()) / group;
}

// Decode when the tile size is the decode kernel's for this group (LaunchAttention checks that
// it is one of the two).
bool IsDecodeTile(const AttentionLayer& layer, const AttentionMeta& meta) {
  return layer.kv_heads > 0 && layer.heads % layer.kv_heads == 0 &&
         meta.tile_tokens == AttentionTileTokens(layer.heads / layer.kv_heads, true);
}

size_t AttentionPartialFloats(const AttentionLayer& layer, const AttentionMeta& meta, int tokens,
                              int splits) {
  if (splits <= 1) return 0;
  if (IsDecodeTile(layer, meta)) {
    return DecodePartialFloats(layer.head_dim, meta.num_tiles, layer.kv_heads, splits);
  }
  return static_cast<size_t>(splits) * tokens * layer.heads * (layer.head_dim + 2);
}

Status LaunchAttention(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* q,
                       const bf16* k, const bf16* v, int tokens, int splits, float* partial,
                       int* counters, bf16* out, cudaStream_t stream) {
  if (tokens <= 0 || meta.num_tiles <= 0) return Ok();
  if (layer.kv_heads <= 0 || layer.heads % layer.kv_heads != 0 ||
      !GroupSupported(layer.heads / layer.kv_heads)) {
    return MakeError("LaunchAttention: GQA group ", layer.heads, "/", layer.kv_heads,
                     " must be 1, 2, 4 or 8");
  }
  const int group = layer.heads / layer.kv_heads;
  const bool decode = IsDecodeTile(layer, meta);
  if (!decode && meta.tile_tokens != AttentionTileTokens(group, false)) {
    return MakeError("LaunchAttention: tile_tokens ", meta.tile_tokens, " is neither ",
                     AttentionTileTokens(group, true), " (decode) nor ",
                     AttentionTileTokens(group, false), " (prefill) for GQA group ", group);
  }
  if (decode && meta.key_limit != nullptr) {
    return MakeError("LaunchAttention: image spans (key_limit) need the prefill kernel's tiles");
  }
  if (splits < 1 || (splits > 1 && partial == nullptr)) {
    return MakeError("LaunchAttention: bad split count ", splits);
  }
  if (decode && splits > 1 && counters == nullptr) {
    return MakeError("LaunchAttention: decode with ", splits, " splits needs the split counters");
  }
  if (layer.kv_dtype == KvDtype::kFp8E4m3 && (!layer.k_scale || !layer.v_scale)) {
    return MakeError("LaunchAttention: FP8 KV cache without scales");
  }
  if (decode) {
    return LaunchDecodeAttention(layer, meta, q, k, v, nullptr, splits, partial, counters, out,
                                 stream);
  }
  GS_RETURN_IF_ERROR(
      LaunchPrefillAttention(layer, meta, q, k, v, tokens, splits, partial, out, stream));
  if (splits > 1) {
    const int d = layer.head_dim;
    GS_RETURN_IF_ERROR(LaunchKernel("AttentionMergeKernel", AttentionMergeKernel,
                                    dim3(tokens, layer.heads), std::min(d, 256), 0, stream,
                                    partial, splits, tokens, layer.heads, d, out));
  }
  return Ok();
}

Status LaunchDecodeAttentionFused(const QkvNormRopeSource& src, const AttentionLayer& layer,
                                  const AttentionMeta& meta, int tokens, int splits,
                                  float* partial, int* counters, bf16* out, cudaStream_t stream) {
  if (tokens <= 0 || meta.num_tiles <= 0) return Ok();
  if (layer.kv_heads <= 0 || layer.heads % layer.kv_heads != 0 ||
      !GroupSupported(layer.heads / layer.kv_heads)) {
    return MakeError("LaunchDecodeAttentionFused: GQA group ", layer.heads, "/", layer.kv_heads,
                     " must be 1, 2, 4 or 8");
  }
  if (!IsDecodeTile(layer, meta)) {
    return MakeError("LaunchDecodeAttentionFused: tile_tokens ", meta.tile_tokens,
                     " is not the decode kernel's (",
                     AttentionTileTokens(layer.heads / layer.kv_heads, true), ")");
  }
  if (meta.key_limit != nullptr) {
    return MakeError("LaunchDecodeAttentionFused: image spans (key_limit) are not decode steps");
  }
  if (src.qkv == nullptr || src.inv_freq == nullptr) {
    return MakeError("LaunchDecodeAttentionFused: qkv and inv_freq are required");
  }
  if (splits < 1 || (splits > 1 && (partial == nullptr || counters == nullptr))) {
    return MakeError("LaunchDecodeAttentionFused: split count ", splits,
                     " without partials or counters");
  }
  if (layer.kv_dtype == KvDtype::kFp8E4m3 && (!layer.k_scale || !layer.v_scale)) {
    return MakeError("LaunchDecodeAttentionFused: FP8 KV cache without scales");
  }
  return LaunchDecodeAttention(layer, meta, nullptr, nullptr, nullptr, &src, splits, partial,
                               counters, out, stream);
}

}  // namespace gs::cuda
