// Vision benchmark: images per second through the CUDA encoder (preprocessed images in, soft
// tokens on the host out: pixel upload, encoder, projector, copy back) for each batch size, and
// the TTFT of a one-image chat prompt: encoding plus the prefill of the expanded prompt (boi,
// n × image token, eoi between text) with the soft tokens in place, up to the first token on the
// host. Host wall-clock times of synchronous calls, medians after two warm-up passes.
#include "cli/bench_vision.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "model/weights.h"
#include "vision/image.h"
#include "vision/image_processor.h"
#if GS_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace gs::cli {

#if GS_HAVE_CUDA
namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A smooth colour pattern (content does not change the encoder's cost).
RgbImage TestImage(int size) {
  RgbImage img;
  img.width = img.height = size;
  img.pixels.resize(static_cast<size_t>(size) * size * 3);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      for (int c = 0; c < 3; ++c) {
        img.pixels[(static_cast<size_t>(y) * size + x) * 3 + c] =
            static_cast<uint8_t>((x * (c + 1) + y * (3 - c)) & 255);
      }
    }
  }
  return img;
}

// Multiply-adds of one image's encoder pass ×2: linear layers, attention (QKᵀ and PV),
// patch embedding and projector.
double EncoderFlops(const ModelConfig& c, const ProcessedImage& img) {
  const VisionConfig& v = *c.vision;
  const double n = img.num_patches(), h = v.hidden_size, qd = double(v.num_heads) * v.head_dim;
  const double per_layer = 2 * n * (4 * h * qd + 3 * h * v.intermediate_size) + 4 * n * n * qd;
  return v.num_layers * per_layer + 2 * n * img.patch_dim() * h +
         2.0 * img.num_soft_tokens * h * c.hidden_size;
}

}  // namespace

int RunVisionBench(const ModelConfig& config, const std::string& model,
                   const VisionBenchOptions& o) {
  if (!config.vision) return Fail("bench", "--vision: the config has no vision_config");
  ImageProcessorOptions popts;
  popts.max_soft_tokens = o.max_soft_tokens;
  const auto tp = std::chrono::steady_clock::now();
  auto image = PreprocessImage(TestImage(o.image_size), popts);
  if (!image) return Fail("bench", image.error().message);
  const double preprocess_s = Seconds(tp);
  const int n_soft = image->num_soft_tokens;

  // One sequence: a chat prompt around the image (system/user text before, the question after).
  const int text_before = 12, text_after = 20;
  const int prompt_len = text_before + n_soft + 2 + text_after;
  KvCacheSpec spec;
  spec.block_size = 16;
  spec.max_sequences = 1;
  spec.num_global_blocks = (prompt_len + 15) / 16;
  const auto t0 = std::chrono::steady_clock::now();
  Expected<std::unique_ptr<CudaRunner>> runner = MakeError("unset");
  if (model.empty()) {
    runner = CreateDummyCudaRunner(config, spec);
  } else {
    auto weights = LoadGemma4Weights(config, model);
    if (!weights) return Fail("bench", weights.error().message);
    runner = CreateCudaRunner(config, *weights, spec);
  }
  if (!runner) return Fail("bench", runner.error().message);
  CudaRunner& r = **runner;
  if (!r.supports_vision()) return Fail("bench", "--vision: the runner has no vision encoder");
  std::fprintf(stderr, "weights: %.2f GB text + %.2f GB vision on %s (%.1f s)\n",
               r.weight_bytes() / 1e9, r.vision_weight_bytes() / 1e9, r.device_name().c_str(),
               Seconds(t0));

  const VisionConfig& vc = *config.vision;
  std::printf("device: %s; vision tower %d layers x %d, %s weights\n", r.device_name().c_str(),
              vc.num_layers, vc.hidden_size, model.empty() ? "dummy (random)" : model.c_str());
  std::printf("image: %dx%d px -> %dx%d px, %d patches, %d soft tokens (budget %d); "
              "preprocessing on the CPU %.1f ms (not in the table)\n",
              o.image_size, o.image_size, image->width, image->height, image->num_patches(),
              n_soft, o.max_soft_tokens, preprocess_s * 1e3);
  std::printf("| images per pass | ms per pass | images/s | soft tokens/s | encoder TFLOP/s |\n");
  std::printf("|----------------:|------------:|---------:|--------------:|----------------:|\n");
  const double flops = EncoderFlops(config, *image);
  for (int batch : o.batches) {
    const std::vector<const ProcessedImage*> images(static_cast<size_t>(batch), &*image);
    std::vector<double> times;
    for (int rep = 0; rep < o.reps + 2; ++rep) {
      const auto t = std::chrono::steady_clock::now();
      auto soft = r.EncodeImages(images);
      if (!soft) return Fail("bench", soft.error().message);
      if (rep >= 2) times.push_back(Seconds(t));
    }
    const double s = MedianOf(times);
    std::printf("| %15d | %11.2f | %8.1f | %13.0f | %15.1f |\n", batch, s * 1e3, batch / s,
                batch * n_soft / s, batch * flops / s / 1e12);
  }

  // TTFT: encode the image, then prefill the whole prompt and read the first token back.
  Batch b;
  for (int i = 0; i < text_before; ++i) b.token_ids.push_back(1000 + i);
  b.token_ids.push_back(config.boi_token_id);
  const int first_image = static_cast<int>(b.token_ids.size());
  for (int i = 0; i < n_soft; ++i) b.token_ids.push_back(config.image_token_id);
  b.token_ids.push_back(config.eoi_token_id);
  for (int i = 0; i < text_after; ++i) b.token_ids.push_back(2000 + i);
  BatchSequence seq;
  seq.num_tokens = prompt_len;
  for (int i = 0; i < spec.num_global_blocks; ++i) seq.block_table.push_back(i);
  b.sequences.push_back(seq);
  b.logits_indices.push_back(prompt_len - 1);
  std::vector<double> enc_t, pre_t, total_t;
  for (int rep = 0; rep < o.reps + 2; ++rep) {
    const auto t = std::chrono::steady_clock::now();
    auto soft = r.EncodeImage(*image);
    if (!soft) return Fail("bench", soft.error().message);
    const double enc = Seconds(t);
    b.image_spans = {{first_image, n_soft, *soft}};
    std::vector<int32_t> next;
    const auto tf = std::chrono::steady_clock::now();
    const Status st = r.ForwardGreedy(b, &next);
    if (!st.ok()) return Fail("bench", st.error().message);
    if (rep >= 2) {
      enc_t.push_back(enc);
      pre_t.push_back(Seconds(tf));
      total_t.push_back(Seconds(t));
    }
  }
  std::printf("\nTTFT of a one-image chat prompt (%d tokens: %d soft tokens + %d text): "
              "%.1f ms = encode %.1f ms + prefill %.1f ms (medians of %d)\n",
              prompt_len, n_soft, prompt_len - n_soft, MedianOf(total_t) * 1e3,
              MedianOf(enc_t) * 1e3, MedianOf(pre_t) * 1e3, o.reps);
  return 0;
}

#else

int RunVisionBench(const ModelConfig&, const std::string&, const VisionBenchOptions&) {
  return Fail("bench", "this gemmaserve was built without CUDA; --vision needs the CUDA runner");
}

#endif  // GS_HAVE_CUDA

}  // namespace gs::cli
