// Image placeholders in a prompt of token ids -> the tokens the model sees (shared by
// `generate --image` and the OpenAI server): each placeholder (config.image_token_id, the
// `<|image|>` the chat template writes per image) becomes <|image> + n × <|image|> + <image|>,
// n = that image's soft-token count, i.e. exactly what the vision encoder returns for the image's
// size and budget (gemma4-architecture.md §4.1 item 7, §7 item 14).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "util/status.h"
#include "vision/image_processor.h"

namespace gs {

// The model's image geometry with a soft-token budget (0 = vision_config.default_output_length),
// validated; errors name `what` (a flag or field) and say when the model takes no images.
Expected<ImageProcessorOptions> ImageOptionsForModel(const ModelConfig& config, int max_soft_tokens,
                                                     const char* what);

struct ExpandedPrompt {
  std::vector<int32_t> ids;
  std::vector<int> first_image_token;  // prompt index of each image's first <|image|>
};

// `soft_tokens[i]` is image i's soft-token count. The prompt must hold one placeholder per image;
// with `append_without_placeholders`, a prompt with none gets the images appended at its end.
Expected<ExpandedPrompt> ExpandImagePlaceholders(const ModelConfig& config,
                                                 const std::vector<int32_t>& ids,
                                                 const std::vector<int>& soft_tokens,
                                                 bool append_without_placeholders);

}  // namespace gs
