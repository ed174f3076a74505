#include "cli/image_prompt.h"

#include "vision/image.h"
#include "vision/image_decode.h"
#include "vision/image_prompt.h"

namespace gs::cli {

Expected<ImagePrompt> BuildImagePrompt(const ModelConfig& config, const std::vector<int32_t>& ids,
                                       const std::vector<std::string>& files, int max_soft_tokens) {
  GS_ASSIGN_OR_RETURN(ImageProcessorOptions opts,
                      ImageOptionsForModel(config, max_soft_tokens, "--image"));
  if (static_cast<int>(files.size()) > kMaxImagesPerRequest) {
    return MakeError("--image: ", files.size(), " images; at most ", kMaxImagesPerRequest,
                     " per prompt");
  }
  ImagePrompt out;
  std::vector<int> soft_tokens;
  for (const std::string& f : files) {
    GS_ASSIGN_OR_RETURN(RgbImage image, LoadImageFile(f));
    auto processed = PreprocessImage(image, opts);
    if (!processed.ok()) return MakeError(f, ": ", processed.error().message);
    soft_tokens.push_back(processed->num_soft_tokens);
    out.images.push_back(std::move(*processed));
  }
  auto expanded = ExpandImagePlaceholders(config, ids, soft_tokens, true);
  if (!expanded.ok()) return MakeError("--prompt-ids: ", expanded.error().message);
  out.ids = std::move(expanded->ids);
  out.first_image_token = std::move(expanded->first_image_token);
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
