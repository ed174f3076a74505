#include "vision/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace gs {
namespace {

// Keys' cubic convolution kernel with a = -0.5 (PIL's and PyTorch's antialias choice), written
// in PyTorch's evaluation order so the double results are the same.
double Cubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

// Taps of one axis: output i reads input [first[i], first[i] + count[i]) with weights
// w[i * stride + j] (int16 fixed point with `precision` fractional bits).
struct AxisTaps {
  std::vector<int> first, count;
  std::vector<int16_t> w;
  int stride = 0;
  int precision = 0;
};

AxisTaps ComputeTaps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  AxisTaps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  std::vector<double> wd(static_cast<size_t>(out_size) * t.stride, 0.0);
  double wt_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), int64_t{in_size}) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, int64_t{t.stride});
    double* w = &wd[static_cast<size_t>(i) * t.stride];
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] = Cubic((static_cast<double>(j + xmin) - center + 0.5) * invscale);
      total += w[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        w[j] /= total;
        wt_max = std::max(wt_max, w[j]);
      }
    }
    t.first[static_cast<size_t>(i)] = static_cast<int>(xmin);
    t.count[static_cast<size_t>(i)] = static_cast<int>(xsize);
  }
  int p = 0;
  for (; p < 22; ++p) {
    const int next = static_cast<int>(0.5 + wt_max * (1 << (p + 1)));
    if (next >= (1 << 15)) break;
  }
  t.precision = p;
  t.w.resize(wd.size());
  for (size_t k = 0; k < wd.size(); ++k) {
    const double v = wd[k] * (1 << p);
    t.w[k] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return t;
}

uint8_t Accumulate(const uint8_t* src, size_t step, const int16_t* w, int count, int precision) {
  int acc = 1 << (precision - 1);
  for (int j = 0; j < count; ++j) acc += static_cast<int>(src[j * step]) * w[j];
  return static_cast<uint8_t>(std::clamp(acc >> precision, 0, 255));
}

RgbImage ResizeWidth(const RgbImage& in, int out_w) {
  const AxisTaps t = ComputeTaps(in.width, out_w);
  RgbImage out{out_w, in.height, std::vector<uint8_t>(static_cast<size_t>(out_w) * in.height * 3)};
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = &in.pixels[static_cast<size_t>(y) * in.width * 3];
    for (int x = 0; x < out_w; ++x) {
      const int16_t* w = &t.w[static_cast<size_t>(x) * t.stride];
      const uint8_t* src = row + static_cast<size_t>(t.first[static_cast<size_t>(x)]) * 3;
      for (int c = 0; c < 3; ++c) {
        out.pixels[(static_cast<size_t>(y) * out_w + x) * 3 + c] =
            Accumulate(src + c, 3, w, t.count[static_cast<size_t>(x)], t.precision);
      }
    }
  }
  return out;
}

RgbImage ResizeHeight(const RgbImage& in, int out_h) {
  const AxisTaps t = ComputeTaps(in.height, out_h);
  const size_t row = static_cast<size_t>(in.width) * 3;
  RgbImage out{in.width, out_h, std::vector<uint8_t>(row * out_h)};
  for (int y = 0; y < out_h; ++y) {
    const int16_t* w = &t.w[static_cast<size_t>(y) * t.stride];
    const uint8_t* src = &in.pixels[static_cast<size_t>(t.first[static_cast<size_t>(y)]) * row];
    for (size_t i = 0; i < row; ++i) {
      out.pixels[static_cast<size_t>(y) * row + i] =
          Accumulate(src + i, row, w, t.count[static_cast<size_t>(y)], t.precision);
    }
  }
  return out;
}

}  // namespace

RgbImage ResizeBicubicAntialias(const RgbImage& image, int out_width, int out_height) {
  RgbImage out = image.width != out_width ? ResizeWidth(image, out_width) : image;
  if (out.height != out_height) out = ResizeHeight(out, out_height);
  return out;
}

}  // namespace gs
