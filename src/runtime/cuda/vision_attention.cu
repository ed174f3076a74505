// Bidirectional attention of the vision encoder (reference gemma4 §4.3): every patch of an image
// attends to every patch of the same image, scale 1.0, no mask inside the image. Tensor cores in
// the flash-attention-2 form, simpler than the text kernels (no cache, no window, no GQA):
//   a block = 64 query rows of one image and one head, 4 warps × 16 rows; keys stream through
//   double-buffered shared-memory tiles of 64 (cp.async); S = Q·Kᵀ with mma m16n8k16 (bf16 in,
//   fp32 out), fp32 online softmax, O += bf16(P)·V on the tensor cores, O / l at the end.
// q, k, v are [N, heads, dp] bf16 with zero columns d … dp−1 (LaunchVisionQkvNormRope), so the
// padded columns add nothing to the scores; the output is [N, heads·d] (only the d real columns).
// With n patches this is 4·n²·dp FLOPs per head: ~0.4 TFLOP per 27-layer image at 2520 patches,
// against ~2.7 TFLOP of the encoder's linear layers.
#include "runtime/cuda/attention_common.cuh"
#include "runtime/cuda/kernels.h"

namespace gs::cuda {
namespace {

using namespace attn;

constexpr int kRows = 64;  // query rows per block
constexpr int kKeys = 64;  // keys per tile

template <int Dp>
constexpr size_t VisionAttentionSmem() {
  return sizeof(bf16) * (kRows + 4 * kKeys) * (Dp + kPad);
}

// Rows [row0, row0 + rows) of the [N, heads, Dp] tensor, head `head`, into a smem tile; rows past
// `rows` become zeros (finite values: a masked probability is 0, and 0 · stale could be NaN).
template <int Dp>
__device__ __forceinline__ void LoadTile(const bf16* __restrict__ src, int64_t row0, int rows,
                                         int heads, int head, bf16* tile, int n_rows) {
  constexpr int kChunks = Dp / 8;
  for (int i = threadIdx.x; i < n_rows * kChunks; i += blockDim.x) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    bf16* dst = tile + r * (Dp + kPad) + c;
    if (r < rows) {
      CpAsync16(dst, src + ((row0 + r) * heads + head) * Dp + c);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
}

// tiles[4·i …]: first patch row of the image, its patch count, first query of the tile (relative
// to the image), queries in the tile.
template <int Dp>
__global__ void __launch_bounds__(128)
    VisionAttentionKernel(const int* __restrict__ tiles, const bf16* __restrict__ q,
                          const bf16* __restrict__ k, const bf16* __restrict__ v, int heads,
                          int d, bf16* __restrict__ out) {
  constexpr int kStride = Dp + kPad, kNt = Dp / 8;
  static_assert(Dp % 16 == 0, "padded head_dim must be a multiple of 16");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* ks = qs + kRows * kStride;  // [2][kKeys][kStride]
  bf16* vs = ks + 2 * kKeys * kStride;

  const int4 tile = reinterpret_cast<const int4*>(tiles)[blockIdx.x];
  const int64_t base = tile.x;
  const int n = tile.y, q0 = tile.z, nq = tile.w, head = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int n_tiles = (n + kKeys - 1) / kKeys;

  LoadTile<Dp>(q, base + q0, nq, heads, head, qs, kRows);
  LoadTile<Dp>(k, base, min(kKeys, n), heads, head, ks, kKeys);
  LoadTile<Dp>(v, base, min(kKeys, n), heads, head, vs, kKeys);
  CpAsyncCommit();

  uint32_t qa[Dp / 16][4];
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[kNt][4];
#pragma unroll
  for (int i = 0; i < kNt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = kt & 1, k0 = kt * kKeys;
    bf16* kb = ks + buf * kKeys * kStride;
    bf16* vb = vs + buf * kKeys * kStride;
    if (kt + 1 < n_tiles) {  // the other buffer was released by the barrier ending tile kt − 1
      const int next = k0 + kKeys, rows = min(kKeys, n - next);
      LoadTile<Dp>(k, base + next, rows, heads, head, ks + (buf ^ 1) * kKeys * kStride, kKeys);
      LoadTile<Dp>(v, base + next, rows, heads, head, vs + (buf ^ 1) * kKeys * kStride, kKeys);
      CpAsyncCommit();
      CpAsyncWaitAllButOne();
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    }
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int kk = 0; kk < Dp / 16; ++kk) {
        Ldsm4(qa[kk], qs + (warp * 16 + (lane / 8 % 2) * 8 + lane % 8) * kStride + kk * 16 +
                          (lane / 16) * 8);
      }
    }

    // S = Q·Kᵀ: the warp's 16 rows × 64 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int i = 0; i < kKeys / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < Dp / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kKeys / 16; ++np) {
        uint32_t b[4];
        Ldsm4(b, kb + (np * 16 + (lane / 16) * 8 + lane % 8) * kStride + kk * 16 +
                     (lane / 8 % 2) * 8);
        Mma(s[2 * np], qa[kk], b[0], b[1]);
        Mma(s[2 * np + 1], qa[kk], b[2], b[3]);
      }
    }

    // Keys past the image are masked; online softmax over each row (its keys in a lane quad).
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * h + e];
          x = k0 + nt * 8 + 2 * (lane % 4) + e < n ? x : -INFINITY;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[h], mx);  // finite: every tile has at least one key
      alpha[h] = __expf(m_run[h] - m_new);       // 0 on the first tile (m_run = −∞)
      m_run[h] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][2 * h + e];
          x = __expf(x - m_new);
          sum += x;
        }
      }
      l_run[h] = l_run[h] * alpha[h] + sum;
    }
#pragma unroll
    for (int i = 0; i < kNt; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }

    // O += P·V: two n-tiles of P's accumulators form one A operand (16 keys).
#pragma unroll
    for (int ks2 = 0; ks2 < kKeys / 16; ++ks2) {
      uint32_t a[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int nt = 2 * ks2 + i / 2, h = i % 2;
        a[i] = PackBf16(s[nt][2 * h], s[nt][2 * h + 1]);
      }
#pragma unroll
      for (int np = 0; np < kNt / 2; ++np) {
        uint32_t b[4];
        Ldsm4T(b, vb + (ks2 * 16 + (lane / 8 % 2) * 8 + lane % 8) * kStride + np * 16 +
                      (lane / 16) * 8);
        Mma(o[2 * np], a, b[0], b[1]);
        Mma(o[2 * np + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 1);
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + lane / 4 + 8 * h;
    if (r >= nq) continue;
    const float inv = 1.0f / l_run[h];
    bf16* dst = out + ((base + q0 + r) * heads + head) * d;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
      const int col = nt * 8 + 2 * (lane % 4);
      if (col < d) {
        *reinterpret_cast<__nv_bfloat162*>(dst + col) =
            __floats2bfloat162_rn(o[nt][2 * h] * inv, o[nt][2 * h + 1] * inv);
      }
    }
  }
}

template <int Dp>
Status Launch(const int* tiles, int num_tiles, const bf16* q, const bf16* k, const bf16* v,
              int heads, int d, bf16* out, cudaStream_t stream) {
  constexpr size_t smem = VisionAttentionSmem<Dp>();
  static bool raised = false;
  if (!raised && smem > 48 * 1024) {
    GS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        VisionAttentionKernel<Dp>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    raised = true;
  }
  VisionAttentionKernel<Dp><<<dim3(num_tiles, heads), 128, smem, stream>>>(tiles, q, k, v, heads,
                                                                          d, out);
  GS_CUDA_CHECK_LAUNCH("VisionAttentionKernel");
  return Ok();
}

}  // namespace

int VisionAttentionTileRows() { return kRows; }

int VisionPaddedHeadDim(int head_dim) { return (head_dim + 15) / 16 * 16; }

Status LaunchVisionAttention(const int* tiles, int num_tiles, const bf16* q, const bf16* k,
                             const bf16* v, int heads, int head_dim, bf16* out,
                             cudaStream_t stream) {
  if (num_tiles <= 0) return Ok();
  if (head_dim % 2 != 0) return MakeError("LaunchVisionAttention: odd head_dim ", head_dim);
  switch (VisionPaddedHeadDim(head_dim)) {
    case 16: return Launch<16>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 32: return Launch<32>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 48: return Launch<48>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 64: return Launch<64>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 80: return Launch<80>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 96: return Launch<96>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    case 128: return Launch<128>(tiles, num_tiles, q, k, v, heads, head_dim, out, stream);
    default:
      return MakeError("LaunchVisionAttention: head_dim ", head_dim,
                       " is not supported (up to 96, or 128)");
  }
}

}  // namespace gs::cuda
