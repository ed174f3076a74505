#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, gemmaserve and every tests/gpu binary for Hopper (sm_90a),
# strips them, and copies them with the data they need and check.sh into <repo>/.device/cuda/ of
# the repository whose device run is made (default: this one). The GPU machine has no gtest /
# nlohmann packages and no network, so binaries travel built.
#   scripts/gpu/build_for_device.sh [dest_repo]
# Then: device run with carry [".device/cuda.txz"], command
#   tar xJf .device/cuda.txz -C .device && bash .device/cuda/check.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest_repo=${1:-$root}
build=${BUILD_DIR:-$root/build-gpu}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
tests=$(cd "$root/tests/gpu" && ls *_test.cpp | sed 's/\.cpp$//')
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target gemmaserve gs_cupti_trace gs_pdl_boundary_bench $tests

out=$dest_repo/.device/cuda
rm -rf "$out"
mkdir -p "$out/bin" "$out/tests" "$out/configs"
cp "$build/gemmaserve" "$build/gs_pdl_boundary_bench" "$out/bin/"
# Debian's cpp-httplib is a shared library (and pulls brotli) that the GPU machine lacks: carry
# them; check.sh puts lib/ on LD_LIBRARY_PATH after the system paths.
mkdir -p "$out/lib"
ldd "$build/gemmaserve" | awk '/libcpp-httplib|libbrotli|libwebp|libsharpyuv/ {print $3}' | xargs -r -I{} cp -L {} "$out/lib/"
for t in $tests; do cp "$build/tests/$t" "$out/tests/"; done
# The CUPTI tracer of trace.sh, with the CUPTI it was built against.
cp "$build/libgs_cupti_trace.so" "$out/lib/"
ldd "$build/libgs_cupti_trace.so" | awk '/libcupti/ {print $3}' | xargs -r -I{} cp -L {} "$out/lib/"
strip "$out/bin/"* "$out/tests/"*
cp -r "$root/configs/gemma-4-26B-A4B-it" "$out/configs/"
# The golden data travels as part of the repository (tests/data/golden); check.sh finds it there.
cp "$root"/scripts/gpu/*.sh "$root"/scripts/gpu/*.py "$out/"
# The device call carries at most 64 MB with the repository: ship one xz archive
# (carry .device/cuda.txz; on the GPU machine: tar xJf .device/cuda.txz -C .device).
tar cf - -C "$dest_repo/.device" cuda | xz -T0 -6 > "$dest_repo/.device/cuda.txz"
du -sh "$out" "$dest_repo/.device/cuda.txz"
