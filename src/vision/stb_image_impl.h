// A narrow wrapper over stb_image (see stb_image_impl.cpp), so no other file includes it.
#pragma once

#include <cstdint>

namespace gs::stb {

// Header only: dimensions and channel count. False if the header is not understood.
bool Info(const uint8_t* data, int len, int* width, int* height, int* channels);
// Decodes to 8-bit RGB (3 channels); nullptr on failure. Free with Free().
uint8_t* LoadRgb(const uint8_t* data, int len, int* width, int* height);
void Free(uint8_t* pixels);
// Why the last call on this thread failed (stb's short reason string).
const char* FailureReason();

}  // namespace gs::stb
