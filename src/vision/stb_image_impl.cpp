// The one translation unit that compiles Debian's stb_image (header-only) for the image decoder,
// restricted to the formats gemmaserve accepts. Its functions stay static to this file; the
// decoder calls them through the small C++ wrapper below. Image side limits are enforced by stb
// itself (STBI_MAX_DIMENSIONS) as well as by DecodeImage before any pixel is decoded.
// GCC's flow analysis flags stb's (correct) lazily initialised I/O context once it is inlined
// here; the warning is about third-party code, so it is silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS 32768
#include <stb/stb_image.h>

#include "vision/stb_image_impl.h"

namespace gs::stb {

bool Info(const uint8_t* data, int len, int* width, int* height, int* channels) {
  return stbi_info_from_memory(data, len, width, height, channels) != 0;
}

uint8_t* LoadRgb(const uint8_t* data, int len, int* width, int* height) {
  int channels = 0;
  return stbi_load_from_memory(data, len, width, height, &channels, 3);
}

void Free(uint8_t* pixels) { stbi_image_free(pixels); }

const char* FailureReason() { return stbi_failure_reason(); }

}  // namespace gs::stb
