#include "vision/image_prompt.h"

#include <algorithm>

namespace gs {

Expected<ImageProcessorOptions> ImageOptionsForModel(const ModelConfig& config, int max_soft_tokens,
                                                     const char* what) {
  if (!config.vision) return MakeError(what, ": the model has no vision_config (text-only model)");
  if (config.image_token_id < 0 || config.boi_token_id < 0 || config.eoi_token_id < 0) {
    return MakeError(what, ": config.json lacks image_token_id / boi_token_id / eoi_token_id");
  }
  ImageProcessorOptions opts;
  opts.patch_size = config.vision->patch_size;
  opts.pooling_kernel_size = config.vision->pooling_kernel_size;
  opts.max_soft_tokens =
      max_soft_tokens > 0 ? max_soft_tokens : config.vision->default_output_length;
  Status st = ValidateImageProcessorOptions(opts);
  if (!st) return MakeError(what, ": ", st.error().message);
  return opts;
}

Expected<ExpandedPrompt> ExpandImagePlaceholders(const ModelConfig& config,
                                                 const std::vector<int32_t>& ids,
                                                 const std::vector<int>& soft_tokens,
                                                 bool append_without_placeholders) {
  const auto placeholders = std::count(ids.begin(), ids.end(), config.image_token_id);
  const bool append = append_without_placeholders && placeholders == 0;
  if (!append && placeholders != static_cast<int64_t>(soft_tokens.size())) {
    return MakeError("the prompt has ", placeholders, " image placeholders (token id ",
                     config.image_token_id, ") for ", soft_tokens.size(), " images");
  }
  ExpandedPrompt out;
  out.ids.reserve(ids.size() + soft_tokens.size() * 2);
  auto put_image = [&](size_t i) {
    out.first_image_token.push_back(static_cast<int>(out.ids.size()) + 1);
    for (int32_t t : ImagePromptTokens(soft_tokens[i], config.boi_token_id, config.image_token_id,
                                       config.eoi_token_id)) {
      out.ids.push_back(t);
    }
  };
  size_t next = 0;  // next image to place
  for (int32_t id : ids) {
    if (append || id != config.image_token_id) {
      out.ids.push_back(id);
    } else {
      put_image(next++);
    }
  }
  if (append) {
    for (; next < soft_tokens.size(); ++next) put_image(next);
  }
  return out;
}

}  // namespace gs
