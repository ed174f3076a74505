// Antialiased bicubic resize of 8-bit images, bit-exact with what transformers' default
// Gemma4ImageProcessor runs: torchvision.transforms.v2.functional.resize(uint8 tensor, BICUBIC,
// antialias=True), i.e. PyTorch's CPU uint8 path (_upsample_bicubic2d_aa, "separable" kernel):
//  * per axis, PIL-style taps: scale = in/out, support = 2·max(scale, 1), center = scale·(i+0.5),
//    first tap = max(int(center − support + 0.5), 0), taps up to int(center + support + 0.5),
//    weight = Keys cubic with a = −0.5 at (j + first − center + 0.5)/max(scale, 1), normalised to
//    sum 1 (all in double);
//  * weights as int16 fixed point: the precision p is the largest (< 22) with
//    round(max weight · 2^(p+1)) < 2^15, each weight round-half-away(w · 2^p);
//  * each output = clamp((2^(p−1) + Σ pixel·weight) >> p, 0, 255), width pass first (into an
//    8-bit intermediate), then the height pass; an axis whose size does not change is skipped.
// This is not PIL's resize (PIL uses 22-bit weights; they differ by up to 2/255, see the golden
// data's pil_backend_max_abs_diff).
#pragma once

#include "vision/image.h"

namespace gs {

// out_width, out_height >= 1.
RgbImage ResizeBicubicAntialias(const RgbImage& image, int out_width, int out_height);

}  // namespace gs
