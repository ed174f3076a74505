// `generate --image`: images into a prompt of token ids. Each image replaces the next image
// placeholder (config.image_token_id, i.e. `<|image|>`, 258880 for Gemma 4) in --prompt-ids with
// <|image> + n × <|image|> + <image|>, n its soft-token count; a prompt without placeholders gets
// the images appended at its end, in order.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/generate.h"
#include "runtime/model_runner.h"
#include "util/status.h"
#include "vision/image_processor.h"

namespace gs::cli {

struct ImagePrompt {
  std::vector<int32_t> ids;             // the expanded prompt
  std::vector<ProcessedImage> images;   // in prompt order
  std::vector<int> first_image_token;   // prompt index of each image's first <|image|>
};

// Decodes and preprocesses the files (max_soft_tokens 0 = vision_config.default_output_length)
// and expands the prompt.
Expected<ImagePrompt> BuildImagePrompt(const ModelConfig& config, const std::vector<int32_t>& ids,
                                       const std::vector<std::string>& files, int max_soft_tokens);

// Runs the runner's vision encoder on every image.
Expected<std::vector<PromptImage>> EncodeImages(ModelRunner& runner, const ImagePrompt& prompt);

}  // namespace gs::cli
