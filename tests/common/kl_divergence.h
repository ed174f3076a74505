// KL(p ‖ q) of the softmaxes of two logit rows, in double: the golden criterion's measure, shared
// by the CPU golden tests and the GPU tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace gs::testutil {

inline double KlDivergence(const float* ref, const float* ours, size_t n) {
  double mr = -INFINITY, mo = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    mr = std::max(mr, static_cast<double>(ref[i]));
    mo = std::max(mo, static_cast<double>(ours[i]));
  }
  double zr = 0, zo = 0;
  for (size_t i = 0; i < n; ++i) {
    zr += std::exp(ref[i] - mr);
    zo += std::exp(ours[i] - mo);
  }
  double kl = 0;
  for (size_t i = 0; i < n; ++i) {
    const double lp = ref[i] - mr - std::log(zr), lq = ours[i] - mo - std::log(zo);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

}  // namespace gs::testutil
