#include "cli/image_prompt.h"

#include <algorithm>

#include "vision/image.h"
#include "vision/image_decode.h"

namespace gs::cli {

Expected<ImagePrompt> BuildImagePrompt(const ModelConfig& config, const std::vector<int32_t>& ids,
                                       const std::vector<std::string>& files, int max_soft_tokens) {
  if (!config.vision) return MakeError("--image: the model has no vision_config (text-only model)");
  if (config.image_token_id < 0 || config.boi_token_id < 0 || config.eoi_token_id < 0) {
    return MakeError("--image: config.json lacks image_token_id / boi_token_id / eoi_token_id");
  }
  if (static_cast<int>(files.size()) > kMaxImagesPerRequest) {
    return MakeError("--image: ", files.size(), " images; at most ", kMaxImagesPerRequest,
                     " per prompt");
  }
  ImageProcessorOptions opts;
  opts.patch_size = config.vision->patch_size;
  opts.pooling_kernel_size = config.vision->pooling_kernel_size;
  opts.max_soft_tokens = max_soft_tokens > 0 ? max_soft_tokens : config.vision->default_output_length;
  GS_RETURN_IF_ERROR(ValidateImageProcessorOptions(opts));

  const auto placeholders = std::count(ids.begin(), ids.end(), config.image_token_id);
  if (placeholders != 0 && placeholders != static_cast<int64_t>(files.size())) {
    return MakeError("--prompt-ids has ", placeholders, " image placeholders (id ",
                     config.image_token_id, ") for ", files.size(), " --image files");
  }
  ImagePrompt out;
  for (const std::string& f : files) {
    GS_ASSIGN_OR_RETURN(RgbImage image, LoadImageFile(f));
    auto processed = PreprocessImage(image, opts);
    if (!processed.ok()) return MakeError(f, ": ", processed.error().message);
    out.images.push_back(std::move(*processed));
  }
  size_t next = 0;  // next image to place
  for (int32_t id : ids) {
    if (placeholders == 0 || id != config.image_token_id) {
      out.ids.push_back(id);
      continue;
    }
    const ProcessedImage& im = out.images[next++];
    out.first_image_token.push_back(static_cast<int>(out.ids.size()) + 1);
    for (int32_t t : ImagePromptTokens(im.num_soft_tokens, config.boi_token_id,
                                       config.image_token_id, config.eoi_token_id)) {
      out.ids.push_back(t);
    }
  }
  for (; next < out.images.size(); ++next) {  // no placeholders: append
    out.first_image_token.push_back(static_cast<int>(out.ids.size()) + 1);
    for (int32_t t : ImagePromptTokens(out.images[next].num_soft_tokens, config.boi_token_id,
                                       config.image_token_id, config.eoi_token_id)) {
      out.ids.push_back(t);
    }
  }
  return out;
}

Expected<std::vector<PromptImage>> EncodeImages(ModelRunner& runner, const ImagePrompt& prompt) {
  std::vector<PromptImage> out;
  for (size_t i = 0; i < prompt.images.size(); ++i) {
    GS_ASSIGN_OR_RETURN(std::vector<float> soft, runner.EncodeImage(prompt.images[i]));
    out.push_back({prompt.first_image_token[i], prompt.images[i].num_soft_tokens, std::move(soft)});
  }
  return out;
}

}  // namespace gs::cli
