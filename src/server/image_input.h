// Images of a chat request (issue 7): the `image_url` content parts of its messages, fetched,
// decoded and preprocessed for the served model. Sources: `data:image/...;base64,` URLs always;
// `file://` paths only inside --allowed-local-media-path; http(s) only with --allow-remote-images
// (cpp-httplib's client, with a size limit and a timeout). Every failure is a 400 naming the
// message and part at fault; nothing here touches the engine.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "server/api_error.h"
#include "server/json_fields.h"
#include "vision/image.h"
#include "vision/image_processor.h"

namespace gs::server {

struct ImageInputOptions {
  bool model_has_vision = false;   // the runner can encode images
  std::string allowed_local_media_path;  // canonical directory; empty: file:// refused
  bool allow_remote = false;             // http(s) image URLs
  double fetch_timeout_seconds = 10.0;   // per remote image (connect + read)
  ImageLimits limits;                    // bytes, pixels, side per image
  int max_images_per_request = kMaxImagesPerRequest;
};

// The `image_url` / `input_image` parts of body.messages, in order (the order the chat template
// writes their placeholders), preprocessed with mm_processor_kwargs.max_soft_tokens (vLLM's
// per-request field; default vision_config.default_output_length).
MaybeError LoadChatImages(const Json& body, const ModelConfig& config,
                          const ImageInputOptions& options,
                          std::vector<std::shared_ptr<const ProcessedImage>>* images);

// One image URL to decoded pixels; `where` names it in errors (e.g. "messages[0].content[1]").
Expected<RgbImage> FetchImage(const std::string& url, const ImageInputOptions& options,
                              const std::string& where);

// Strict base64 (RFC 4648 alphabet, optional '=' padding, ASCII whitespace ignored); an error
// naming the offset of any other character, or a size over max_bytes.
Expected<std::vector<uint8_t>> DecodeBase64(std::string_view text, size_t max_bytes);

}  // namespace gs::server
