#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, gemmaserve and every tests/gpu binary for Hopper (sm_90a),
# strips them, and copies them with the data they need and check.sh into <repo>/.device/cuda/ of
# the repository whose device run is made (default: this one). The GPU machine has no gtest /
# nlohmann packages and no network, so binaries travel built.
#   scripts/gpu/build_for_device.sh [dest_repo]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest_repo=${1:-$root}
build=${BUILD_DIR:-$root/build-gpu}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
tests=$(cd "$root/tests/gpu" && ls *_test.cpp | sed 's/\.cpp$//')
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target gemmaserve $tests

out=$dest_repo/.device/cuda
rm -rf "$out"
mkdir -p "$out/bin" "$out/tests" "$out/configs"
cp "$build/gemmaserve" "$out/bin/"
# Debian's cpp-httplib is a shared library (and pulls brotli) that the GPU machine lacks: carry
# them; check.sh puts lib/ on LD_LIBRARY_PATH after the system paths.
mkdir -p "$out/lib"
ldd "$build/gemmaserve" | awk '/libcpp-httplib|libbrotli/ {print $3}' | xargs -r -I{} cp -L {} "$out/lib/"
for t in $tests; do cp "$build/tests/$t" "$out/tests/"; done
strip "$out/bin/"* "$out/tests/"*
cp -r "$root/configs/gemma-4-26B-A4B-it" "$out/configs/"
if [ -d "$root/tests/data/golden" ]; then
  mkdir -p "$out/data"
  cp -r "$root/tests/data/golden" "$out/data/golden"
fi
cp "$root/scripts/gpu/check.sh" "$out/check.sh"
cp "$root/scripts/gpu/bench_serve.sh" "$out/bench_serve.sh"
du -sh "$out"
size=$(du -sm "$out" | cut -f1)
if [ "$size" -gt 60 ]; then
  echo "warning: $out is ${size} MB (the device call carries at most ~60 MB)" >&2
fi
