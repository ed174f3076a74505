// Launchers of the CUDA runner's kernels, one group per .cu file. Internal to src/runtime/cuda and
// the GPU tests: these take raw device pointers and a stream, check the launch, and return a
// Status naming the kernel on failure. Activations are row-major [rows, width].
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/cuda_check.h"
#include "util/status.h"

namespace gs::cuda {

using bf16 = __nv_bfloat16;

// Streaming multiprocessors of the current device (cached after the first call).
int DeviceSmCount();
// Threads of a one-block-per-row kernel over `rows` rows (norm_rope.cu).
int RowThreads(int rows);
// Tests and benchmarks: run the loop-based generic form of the row kernels (LaunchRmsNorm,
// LaunchPostAttention, LaunchFfnCombine) for every width, instead of the register-resident one.
void SetRowKernelsGeneric(bool generic);

// ---------------------------------------------------------------------------------------------
// nvfp4_gemm.cu: W4A16 (and packed-BF16) GEMM y = x · Wᵀ over one matrix or a bank of equally
// shaped matrices (experts), weights in the lane-major layout of nvfp4_repack.h.

enum class PackedFormat { kNvfp4, kBf16 };

struct PackedMatrix {
  PackedFormat format = PackedFormat::kNvfp4;
  const uint8_t* codes = nullptr;   // nvfp4 codes, or bf16 values
  const uint8_t* scales = nullptr;  // nvfp4 packed block scales (unused for bf16)
  int64_t bank_code_bytes = 0;      // stride between the matrices of a bank
  int64_t bank_scale_bytes = 0;
  // Per bank: {gate, up} (GLU epilogue) or {scale} (store epilogue), already multiplied by the
  // kernel's fixed 2^16 dequant offset for nvfp4 (nvfp4_repack.h explains it).
  const float* global_scales = nullptr;
  int rows = 0;  // N: outputs (GLU: gate and up rows interleaved, 2 × intermediate)
  int cols = 0;  // K: inputs, a multiple of 64
};

// Which banks run on which rows. Bank b processes entries [offsets[b], offsets[b+1]); entry e
// reads x row entries[e] / in_div and writes output row entries[e]. Without offsets the only bank
// (0) processes rows 0..m-1 of x into rows 0..m-1 of the output.
struct GemmRows {
  const int* active = nullptr;        // [max_active] bank ids, or null (bank 0)
  const int* active_count = nullptr;  // device scalar, with `active`
  int max_active = 1;
  const int* offsets = nullptr;  // [banks + 1]
  const int* entries = nullptr;
  int in_div = 1;
  int m = 0;         // rows without offsets; otherwise an upper bound of any bank's rows
  const float* row_weight = nullptr;  // store epilogue: × row_weight[output row] (router weight)
  // The routing tables (active, active_count, offsets, entries) were written two or more PDL
  // kernels back, not by the kernel just before (the experts' down projection, after gate/up):
  // the decode GEMV then reads them and starts the weight stream before its PDL wait.
  bool routing_settled = false;
  // One token's top-k slots, ungrouped (LaunchPackedGemvPair only): `active` is the top-k ids, so
  // grid row j runs bank active[j] on the one row j (input row j / in_div, output row j); no
  // active_count, offsets or entries. Its experts are distinct, so no bank runs twice.
  bool one_token_slots = false;
};

enum class GemmEpilogue {
  kGluBf16,   // out[r, j] = bf16(gelu_tanh(acc_gate·g_gate) · acc_up·g_up), j < rows/2
  kStoreF32,  // out[r, n] = acc·g (· row_weight[r])
};

// Dispatches decode sizes of NVFP4 to LaunchPackedGemv (see DecodeGemvKind in nvfp4_gemm.cu),
// the rest to the tiled tensor-core kernel.
Status LaunchPackedGemm(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                        void* out, int out_stride, GemmEpilogue epilogue, cudaStream_t stream);
// 16-row weight tiles per warp of the tiled NVFP4 kernel, 1 or 2 (each B fragment then feeds two
// MMAs). The default comes from GS_GEMM_MTILES (unset: 2); tests set both.
int PackedGemmMTiles();
void SetPackedGemmMTiles(int m_tiles);
// Warps per 16-row tile of the split-K decode kernel: 1, 2, 4 or 8, or 0 = chosen per launch
// from the grid size (the default; GS_GEMV_SPLIT sets it at startup). For tests and benchmarks.
int GemvSplit();
void SetGemvSplit(int warps_per_tile);

// nvfp4_gemv.cu: the decode paths (NVFP4 only). kSplitK: blocks of 8 warps over (bank, 8/split
// tiles), each tile split over K between `split` warps (GemvSplit), weights in registers. kStream: a persistent grid streaming (bank, tile) items
// through shared-memory stages with cp.async.
enum class GemvKind { kSplitK, kStream };
Status LaunchPackedGemv(const PackedMatrix& w, const GemmRows& rows, const bf16* x, int x_stride,
                        void* out, int out_stride, GemmEpilogue epilogue, GemvKind kind,
                        cudaStream_t stream);
// Two kSplitK products with one epilogue in one launch (one wave, one PDL link): problem 0 a
// single matrix (the dense MLP), problem 1 a bank of experts with its routing; both ≤ 8 tokens.
// The experts take ChooseSplit's warps per tile, the matrix as many as balance the blocks' bytes:
// the experts' results are those of LaunchPackedGemv; the matrix's too when its split is the one
// LaunchPackedGemv would choose, otherwise within fp32 regrouping.
Status LaunchPackedGemvPair(const PackedMatrix& w0, const GemmRows& rows0, const bf16* x0,
                            int x0_stride, void* out0, int out0_stride, const PackedMatrix& w1,
                            const GemmRows& rows1, const bf16* x1, int x1_stride, void* out1,
                            int out1_stride, GemmEpilogue epilogue, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// bf16_gemv.cu: decode-size BF16 products out[M, N] fp32 = x[M, K] · W[N, K]ᵀ on the weights as
// stored for cuBLASLt (row-major [N, K], not repacked), streamed at memory bandwidth with mma.sync
// and launched with PDL. Bf16Gemm::Run (bf16_gemm.cpp) dispatches to it when Bf16GemvServes().

// Scratch of the blocks that split one 16-row tile's K range: `partials` holds the partial sums
// of one launch (too small: fewer splits), `counters` (one per tile and 64-token chunk) must be
// zero before the first launch and are left zero by every launch, so graph replays reuse them.
// Launches sharing a workspace must be ordered (one stream). An empty workspace: no split.
struct Bf16GemvWorkspace {
  float* partials = nullptr;
  size_t partial_bytes = 0;
  int* counters = nullptr;
  int num_counters = 0;
};

// Any M >= 0 (tokens in chunks of 64), N >= 1, K a positive multiple of 8, x and w 16-byte
// aligned (rows then are too); anything else is an error naming the shape. Results are
// bit-identical run to run (fixed-order reductions, no atomics on the output). `splits`: blocks
// per tile along K (tests and tuning; more than the workspace holds is an error); 0 = chosen
// from the shape and the occupancy, or GS_BF16_GEMV_SPLITS=<n> (read once, a tuning switch).
Status LaunchBf16Gemv(const bf16* x, int m, int k, const bf16* w, int n, float* out,
                      const Bf16GemvWorkspace& ws, cudaStream_t stream, int splits = 0);

// The k-split blocks LaunchBf16Gemv(splits = 0) uses for this shape and workspace (1: none),
// for benchmarks and tests.
int Bf16GemvSplits(int m, int n, int k, const Bf16GemvWorkspace& ws);

// Policy of Bf16Gemm::Run (fp32 output, alpha 1): the GEMV serves M <= max_m (default 32) with
// K a multiple of 8. From the environment on first use: GS_BF16_GEMV=0 turns it off,
// GS_BF16_GEMV_MAX_M=<n> sets max_m. SetBf16GemvPolicy overrides both (tests, benchmarks).
bool Bf16GemvServes(int m, int n, int k);
void SetBf16GemvPolicy(bool enabled, int max_m);
// Whether LaunchBf16Gemv sums a tile's k-splits (2..8) in a thread-block cluster (distributed
// shared memory, no global round trip) or through the workspace (fence, counter, last block):
// the same bits either way. Default on; GS_GEMV_CLUSTER=0 at startup turns it off. For tests and
// benchmarks.
void SetBf16GemvClusterSplits(bool on);

// ---------------------------------------------------------------------------------------------
// moe.cu

// Router logits of up to 8 tokens (decode), fp32: logits[t, e] = x[t] · w[e] with w fp32
// [experts, hidden]. Larger token counts use an fp32 GEMM.
inline constexpr int kRouterGemvTokens = 8;
Status LaunchRouterLogits(const float* x, int tokens, int hidden, const float* w, int experts,
                          float* logits, cudaStream_t stream);

// Router selection from fp32 logits [tokens, experts] (the router input comes from
// LaunchPostAttention, the logits from an fp32 GEMM): top-k of each token (lowest index on
// ties), weights = softmax over the k selected × per_expert_scale, ids/weights [tokens, top_k];
// then the grouping of LaunchMoeGroup. Up to 128 tokens all of it is one single-block kernel.
Status LaunchRouterSelect(const float* logits, int tokens, int experts, int top_k,
                          const float* per_expert_scale, const int* valid_tokens, int* topk_ids,
                          float* topk_weights, int* offsets, int* entries, int* active,
                          int* active_count, cudaStream_t stream);

// Decode (≤ kRouterGemvTokens tokens): LaunchRouterLogits and LaunchRouterSelect in one launch,
// same outputs (logits included). `done` is a device int that must be 0 before the first launch;
// the kernel leaves it 0 again (graph replays reuse it). Launches sharing one `done` must be
// ordered (one stream).
Status LaunchRouterDecode(const float* x, int tokens, int hidden, const float* w, int experts,
                         int top_k, const float* per_expert_scale, const int* valid_tokens,
                         float* logits, int* topk_ids, float* topk_weights, int* offsets,
                         int* entries, int* active, int* active_count, int* done,
                         cudaStream_t stream);

// Groups the tokens·top_k slots by expert: offsets [experts + 1], entries [slots] (slot ids),
// active [experts] (experts with slots, ascending) and active_count. With valid_tokens (a device
// scalar), only the slots of the first *valid_tokens tokens are grouped (the rest is padding).
Status LaunchMoeGroup(const int* topk_ids, int slots, int top_k, const int* valid_tokens,
                      int experts, int* offsets, int* entries, int* active, int* active_count,
                      cudaStream_t stream);

// End of the feed-forward block, per token t (reference §3.3):
//   moe = Σ_j slot_out[t·k + j]            (fixed order: deterministic)
//   f   = moe ? rms(dense, post1) + rms(moe, post2) : dense
//   h   = (h + rms(f, post)) · layer_scalar
//   x_next = bf16(rms(h) ⊙ next_norm)      (the next layer's input norm, when x_next is given)
// slot_out may be null (no MoE block).
Status LaunchFfnCombine(float* h, const float* dense, const float* slot_out, int top_k, int tokens,
                        int hidden, const float* post1, const float* post2, const float* post,
                        float layer_scalar, float eps, const float* next_norm, bf16* x_next,
                        cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// norm_rope.cu

// out[i] = bf16(rms(x[row_index ? row_index[i] : i]) ⊙ w), w may be null (scale-free).
Status LaunchRmsNorm(const float* x, const int* row_index, int rows, int width, const float* w,
                     float eps, bf16* out, cudaStream_t stream);

// h += rms(attn, post_attn); x_dense = bf16(rms(h, pre_ffn)); x_moe = bf16(rms(h, pre_ffn_2));
// router_in = rms_noscale(h) ⊙ router_scale · hidden^-½ in fp32 (x_moe and router_in may be
// null).
Status LaunchPostAttention(float* h, const float* attn, int tokens, int hidden,
                           const float* post_attn, const float* pre_ffn, const float* pre_ffn_2,
                           const float* router_scale, float eps, bf16* x_dense, bf16* x_moe,
                           float* router_in, cudaStream_t stream);

// router_fold.cu: the fp32 router folded through the o projection for one-token decode steps
// (the file's comment has the algebra). At load: r_scaled [E, H] = router ⊙ router_scale · H^-½
// and c_rows [2E, q_rows] = the bf16 hi and lo rows of C = r_scaled ⊙ post_attn · W_o, appended
// to W_o ([H, q_rows]) as the o projection's extra outputs.
bool RouterFoldServes(int hidden, int experts, int top_k);
Status LaunchRouterFold(const float* router, const float* router_scale, const float* post_attn,
                        const bf16* o, int experts, int hidden, int q_rows, float* r_scaled,
                        bf16* c_rows, cudaStream_t stream);
// a [E] = h [H] · r_scaledᵀ in fp32 for one token: the fold's h part. Each of its blocks then
// adds 1 to *done (a device int at 0 before), which LaunchPostAttentionRouted waits for and
// resets: the two may run on different streams.
Status LaunchRouterFoldH(const float* h, int hidden, const float* r_scaled, int experts, float* a,
                         int* done, cudaStream_t stream);
// One token: LaunchPostAttention (without router_in), then logits = inv_h·(router_a + inv_a·
// (B_hi + B_lo)) from the extended o row `attn` [H + 2E] and its top-k (ids and weights
// [top_k], ungrouped: GemmRows::one_token_slots; active_count = top_k, 0 for padding). Waits
// (spinning) for LaunchRouterFoldH's count in a_done, so that launch must come first in host
// order.
Status LaunchPostAttentionRouted(float* h, const float* attn, int hidden, int experts,
                                 const float* router_a, int* a_done, const float* post_attn,
                                 const float* pre_ffn, const float* pre_ffn_2, float eps,
                                 bf16* x_dense, bf16* x_moe, float* logits, int top_k,
                                 const float* per_expert_scale, const int* valid_tokens,
                                 int* topk_ids, float* topk_weights, int* active_count,
                                 cudaStream_t stream);

// From the fused projection qkv fp32 [T, (heads + 2·kv)·d] (no v columns when k_eq_v):
// q = rope(rms(q) ⊙ q_norm), k = rope(rms(k) ⊙ k_norm), v = rms(v or raw k), stored bf16
// [T, heads·d] and [T, kv·d]. RoPE is rotate-half with angle = float(pos)·inv_freq[i].
Status LaunchQkvNormRope(const float* qkv, int tokens, int heads, int kv_heads, int head_dim,
                         bool k_eq_v, const float* q_norm, const float* k_norm,
                         const float* inv_freq, const int* positions, float eps, bf16* q, bf16* k,
                         bf16* v, cudaStream_t stream);

struct AttentionLayer;
struct AttentionMeta;

// Decode fusion of LaunchQkvNormRope and LaunchKvWrite: the same q, k, v (kv_heads and head_dim
// from `layer`, positions from `meta`), and the k/v blocks append their rows to the layer's cache
// exactly as LaunchKvWrite would (same bytes and FP8 scales). The write then happens before the
// step's attention instead of after it, which is only correct when every sequence of the step
// has one new token: a ring slot then holds position p − window, outside p's window, and the
// attention reads the step's own keys from k/v, never from the cache.
Status LaunchQkvNormRopeKv(const float* qkv, int tokens, int heads, bool k_eq_v,
                           const float* q_norm, const float* k_norm, const float* inv_freq,
                           float eps, const AttentionLayer& layer, const AttentionMeta& meta,
                           bf16* q, bf16* k, bf16* v, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// attention.cu (dispatch, split merge), attention_prefill.cu, attention_decode.cu, kv_write.cu

// Element type of the KV cache. FP8 stores e4m3 codes with one fp32 dequant scale per
// (position, kv head) for K and one for V (s = amax / 448 of that row, set when it is written),
// in the byte order and with the stored scale s · 2^120 of fp8_kv_layout.h.
enum class KvDtype { kBf16, kFp8E4m3 };

// Per-step sequence metadata on the device (see cuda_runner.cpp for how it is built).
struct AttentionMeta {
  const int* seq_start = nullptr;   // [S] position of the sequence's first new token
  const int* seq_first = nullptr;   // [S] index of that token in the batch
  const int* seq_count = nullptr;   // [S] new tokens
  const int* seq_slot = nullptr;    // [S] KV slot (sliding rings)
  const int* seq_table = nullptr;   // [S] offset of the sequence's block table in block_tables
  const int* block_tables = nullptr;
  const int* token_seq = nullptr;   // [T]
  const int* positions = nullptr;   // [T]
  // [T] or null: the last key position each token sees (its own position, or for a token of an
  // image span the span's last position: images are bidirectional on sliding layers, reference
  // §4.6). Non-decreasing within a sequence; only the prefill kernel reads it.
  const int* key_limit = nullptr;
  // Query tiles: tile i covers tokens [tile_first[i], tile_first[i] + tile_count[i]) of sequence
  // tile_seq[i]; tile_count <= tile_tokens, which must be AttentionTileTokens(group, decode) of
  // the layer's GQA group: it also selects the kernel.
  const int* tile_seq = nullptr;
  const int* tile_first = nullptr;
  const int* tile_count = nullptr;
  int num_tiles = 0;
  int tile_tokens = 0;
  // Host-known: every sequence of the step starts at position 0 (first chunks), so no tile reads
  // a key from the cache; the prefill kernel then skips the FP8 cache's staging and conversion
  // (the same bits: the chunk's own keys are bf16 either way) and keeps the bf16 kernel's
  // occupancy.
  bool keys_all_new = false;
};

// Tokens per query tile. decode (every sequence of the step has at most 8 / group new tokens):
// the decode kernel, whose tile is 8 rows = tokens × group; otherwise the prefill kernel's 64
// rows. group (heads / kv_heads) must be 1, 2, 4 or 8.
int AttentionTileTokens(int group, bool decode);
// Keys per smem tile of the decode kernel: each of its splits takes at least one such tile, so a
// query tile with K visible keys uses at most ceil(K / this) splits.
int AttentionDecodeKeyTile();

struct AttentionLayer {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;      // sliding window, 0 for global layers
  int block_size = 0;  // global layers: tokens per paged block
  KvDtype kv_dtype = KvDtype::kBf16;
  // sliding: [slots·window, kv, d]; global: [blocks·block_size, kv, d]; bf16 or e4m3 elements.
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  // FP8 only: [cache rows, kv] fp32 stored scales S = s · 2^120 (value = e4m3 · s; the tile
  // loader's bf16 expansion is e4m3 · 2^-120, see fp8_kv_layout.h).
  float* k_scale = nullptr;
  float* v_scale = nullptr;
};

// out[t, h] = Σ_p softmax_p(q[t,h] · k_p) v_p over the keys visible to token t (scale 1.0, no
// softcap): keys before the sequence's chunk come from the cache, keys inside it from k/v.
// Tensor cores (mma.sync bf16, fp32 accumulation and softmax); FP8 cache rows are expanded to
// bf16 exactly and their scales applied to the scores (K) and probabilities (V).
// `splits` > 1 divides each query's keys among up to that many blocks (flash-decoding; a
// query tile uses at most one split per tile of keys) and merges them; `partial` then needs
// AttentionPartialFloats(...) floats. The decode kernel (meta.tile_tokens of the decode size)
// merges in its last split block, which needs `counters`: meta.num_tiles · layer.kv_heads ints
// that are zero before the launch; every launch leaves them zero again, so one array serves all
// layers and graph replays of a stream (launches on one stream only: they must not overlap).
// Results are deterministic (the merge runs in split order, whichever block finishes last).
Status LaunchAttention(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* q,
                       const bf16* k, const bf16* v, int tokens, int splits, float* partial,
                       int* counters, bf16* out, cudaStream_t stream);
// The decode fusion of LaunchQkvNormRopeKv and the decode attention kernel: what the fused
// kernel reads instead of bf16 q/k/v. qkv fp32 [T, (heads + 2·kv)·d] as LaunchQkvNormRope
// takes it (no v columns when k_eq_v); q_norm / k_norm may be null (no weight).
struct QkvNormRopeSource {
  const float* qkv = nullptr;
  bool k_eq_v = false;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  const float* inv_freq = nullptr;  // [d/2]
  float eps = 0.0f;
};

// LaunchQkvNormRopeKv followed by LaunchAttention on a decode step, in one kernel: each decode
// attention block computes the q rows of its tile and the k/v rows of its kv head from qkv
// itself (QkvNormRopeKernel's arithmetic, bit for bit), and one block per (token, kv head) —
// split 0 — appends k/v to the cache exactly as LaunchQkvNormRopeKv does. `out` and the cache
// then hold the same bits as that two-kernel path; q/k/v bf16 are not written. Decode steps
// only: every sequence has one new token, in a tile of its own (meta.tile_tokens of the decode
// kernel, tile_count 1) — a ring slot then holds p − window, outside p's window, and no block
// reads a cache row that another block writes (the step's own keys come from the block's own
// copy). The kernel traps on a tile of more than one new key. Other arguments
// as LaunchAttention.
Status LaunchDecodeAttentionFused(const QkvNormRopeSource& src, const AttentionLayer& layer,
                                  const AttentionMeta& meta, int tokens, int splits,
                                  float* partial, int* counters, bf16* out, cudaStream_t stream);

// Floats of LaunchAttention's `partial` for this layer, step metadata (its tile size and count),
// token count and split count; 0 when splits ≤ 1.
size_t AttentionPartialFloats(const AttentionLayer& layer, const AttentionMeta& meta, int tokens,
                              int splits);

// Appends the chunk's k/v to the cache (for a ring, only the last `window` positions of each
// sequence's chunk, so a chunk longer than the window keeps exactly the newest window). FP8:
// per (token, kv head) s = amax / 448 (clamped to [2^-126, 2^7]), codes = e4m3(x / s) (round to
// nearest, saturating) in the byte order of fp8_kv_layout.h, stored scale s · 2^120.
Status LaunchKvWrite(const AttentionLayer& layer, const AttentionMeta& meta, const bf16* k,
                     const bf16* v, int tokens, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// embedding.cu: h[t] = float(table[ids[t]]) · scale (scale = bf16(√hidden) for the real model).
Status LaunchEmbed(const int* ids, int tokens, const bf16* table, int hidden, float scale,
                   float* h, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// sampling.cu
// x = cap · tanh(x / cap) in place (cap > 0): the element-wise form (the runner uses the fused
// LaunchSoftcapArgmax; the tests check the fused values against this one bit for bit).
Status LaunchSoftcap(float* logits, int64_t n, float cap, cudaStream_t stream);
// Greedy selection fused with the final-logit softcap, one pass over the logits: when cap > 0,
// logits = cap · tanh(logits / cap) in place (bit-identical to LaunchSoftcap); then out[r] = index
// of the largest (softcapped) logit of row r, lowest index on ties, NaN never selected (a row of
// NaN gives 0). Each row is split over several blocks when there are few rows. `scratch`
// (16-byte aligned, ≥ SoftcapArgmaxScratchBytes(rows)) holds per-row counters and partial
// results: zero it once after allocating it; every launch leaves the counters at 0 again (graph
// replays reuse them). Launches sharing one scratch must not run concurrently. rows ≤ 65535.
size_t SoftcapArgmaxScratchBytes(int rows);
Status LaunchSoftcapArgmax(float* logits, int rows, int vocab, float cap, int* out, void* scratch,
                           size_t scratch_bytes, cudaStream_t stream);

// One row's token selection (runtime/model_runner.h GpuSamplingParams, laid out for the device).
struct SampleRowParams {
  float temperature;  // <= 0: greedy
  int top_k;          // 0 = off, 1 = greedy
  float top_p;        // >= 1 = off
  float min_p;        // <= 0 = off
  uint64_t seed;
  uint64_t step;
};

// One token per row of logits [rows, vocab] (one block per row): argmax (lowest index on ties)
// when greedy; otherwise a draw from softmax(logits / T) restricted to the prefix of the order
// (logit descending, index ascending) that top-k, then top-p over the renormalized top-k set,
// then min-p (p >= min_p · p_max) keep — runtime/sampling.cpp's definitions. The draw is
// Gumbel-max with counter-based noise of (seed, step, index): a row's token depends only on its
// own logits and parameters. logprobs (may be null): log_softmax(logits)[id].
Status LaunchSample(const float* logits, int rows, int vocab, const SampleRowParams* params,
                    int* ids, float* logprobs, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// bf16_to_f32.cu: out[i] = float(in[i]) (load-time widening of the router weights).
Status LaunchBf16ToF32(const bf16* in, int64_t n, float* out, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// dummy_weights.cu: deterministic pseudo-random fills for `--load-format dummy`.
// bf16 values ~ uniform with standard deviation `stddev`.
Status LaunchFillBf16(bf16* out, int64_t n, float stddev, uint64_t seed, cudaStream_t stream);
// Random packed NVFP4 codes (any byte) and block scales (e4m3 values in [scale_lo, scale_hi)).
Status LaunchFillNvfp4(uint8_t* codes, int64_t code_bytes, uint8_t* scales, int64_t scale_bytes,
                       float scale_lo, float scale_hi, uint64_t seed, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// The vision encoder (vision_encoder.cpp drives them; reference gemma4 §4).

// vision_embed.cu: out[i] = bf16(2·(pixels[i] − ½)) (the patch GEMM's input), and after the GEMM
// h[t] = e[t] + (table[0][pos_x[t]] + table[1][pos_y[t]]) with table fp32 [2, table_size, hidden].
Status LaunchVisionPixels(const float* pixels, int64_t n, bf16* out, cudaStream_t stream);
Status LaunchVisionPositions(const float* e, const int* pos_x, const int* pos_y,
                             const float* table, int table_size, int patches, int hidden,
                             float* h, cudaStream_t stream);

// vision_qkv.cu: per-head norms and 2-D RoPE from qkv fp32 [N, 3·heads·d] into q, k, v bf16
// [N, heads, padded_dim] (padding columns zero); inv_freq has head_dim/4 entries.
Status LaunchVisionQkvNormRope(const float* qkv, int patches, int heads, int head_dim,
                               int padded_dim, const float* q_norm, const float* k_norm,
                               const float* inv_freq, const int* pos_x, const int* pos_y,
                               float eps, bf16* q, bf16* k, bf16* v, cudaStream_t stream);

// vision_attention.cu: bidirectional attention inside each image (scale 1.0). tiles: int4 per
// query tile {first patch row of its image, the image's patches, first query (image-relative),
// queries ≤ VisionAttentionTileRows()}. q, k, v [N, heads, VisionPaddedHeadDim(head_dim)], out
// [N, heads·head_dim].
int VisionAttentionTileRows();
int VisionPaddedHeadDim(int head_dim);
Status LaunchVisionAttention(const int* tiles, int num_tiles, const bf16* q, const bf16* k,
                             const bf16* v, int heads, int head_dim, bf16* out,
                             cudaStream_t stream);

// vision_glu.cu: out[r, j] = bf16(gelu_tanh(gate_up[r, j]) · gate_up[r, inter + j]).
Status LaunchGeluGlu(const float* gate_up, int rows, int inter, bf16* out, cudaStream_t stream);

// vision_pool.cu: soft token s = the patches slot_patches[slot_offsets[s] … slot_offsets[s+1])
// of h fp32 [N, hidden] summed in that order, each × 1/k², then × √hidden, standardised
// (std_bias/std_scale may both be null) and RMS-normalised without weight, bf16 [S, hidden].
Status LaunchVisionPool(const float* h, const int* slot_offsets, const int* slot_patches,
                        int soft_tokens, int hidden, int kernel_size, const float* std_bias,
                        const float* std_scale, float eps, bf16* out, cudaStream_t stream);

}  // namespace gs::cuda
