#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh): tools/pdl_boundary_bench.cu — what
# a kernel boundary of a PDL chain costs in a CUDA graph (a chain of one-block kernels; wide
# grids streaming weights; wide → one-block pairs) and what the "last block" fusion of the
# one-block kernel into the wide grid saves (pair − fused; negative: the separate kernel is
# faster). Prints a table; also written to $OUT/pdl_boundary.txt.
#   bash .device/cuda/pdl_boundary.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
"$here/bin/gs_pdl_boundary_bench" | tee "$out/pdl_boundary.txt"
