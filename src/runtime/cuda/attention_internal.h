// Launchers of the two attention kernels, chosen by LaunchAttention (attention.cu) from the query
// tile size. Both take LaunchAttention's arguments, validated there.
#pragma once

#include "runtime/cuda/kernels.h"

namespace gs::cuda {

// Query rows (tokens × GQA group) of one tile of each kernel.
int PrefillTileRows();  // attention_prefill.cu
int DecodeTileRows();   // attention_decode.cu

Status LaunchPrefillAttention(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* q,
                              const bf16* k, const bf16* v, int tokens, int splits,
                              float* partial, bf16* out, cudaStream_t stream);
// The decode kernel merges its own splits (see attention_decode.cu): `partial` holds
// DecodePartialFloats(...) floats and `counters` num_tiles · kv_heads zeroed ints when splits > 1.
// With `fused` (LaunchDecodeAttentionFused) q, k and v are unused: the kernel reads fused->qkv.
Status LaunchDecodeAttention(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* q,
                             const bf16* k, const bf16* v, const QkvNormRopeSource* fused,
                             int splits, float* partial, int* counters, bf16* out,
                             cudaStream_t stream);
size_t DecodePartialFloats(int head_dim, int num_tiles, int kv_heads, int splits);

}  // namespace gs::cuda
