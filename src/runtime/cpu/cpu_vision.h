// The Gemma 4 vision encoder on the CPU, fp32 (reference §4): patch embedding with separate x / y
// position tables, bidirectional encoder layers with 2-D RoPE, 3×3 position pooling, × √hidden,
// standardisation, then the weight-free RMSNorm and the projector into the text hidden size.
// Only the valid patches are run: transformers pads to max_patches and masks the padding keys,
// which leaves the valid rows' results unchanged.
#pragma once

#include <vector>

#include "model/config.h"
#include "model/vision_weights.h"
#include "util/status.h"
#include "util/thread_pool.h"
#include "vision/image_processor.h"

namespace gs::cpu {

// The checks every encoder makes first: the image was preprocessed for this tower (patch size,
// pooling kernel), its patch grid and arrays agree, and the grid fits the position table.
Status CheckVisionInput(const VisionConfig& vc, const ProcessedImage& image);

// Soft-token embeddings [image.num_soft_tokens, config.hidden_size] (text hidden), in the order
// they replace the image's <|image|> tokens.
Expected<std::vector<float>> EncodeImage(const ModelConfig& config, const VisionWeights& weights,
                                         const ProcessedImage& image, ThreadPool& pool);

}  // namespace gs::cpu
