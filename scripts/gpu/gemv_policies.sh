#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh): the decode benchmark of the dummy
# 26B-A4B model once per GS_GEMV_POLICY (which decode kernel serves which NVFP4 product; see
# DecodeGemvKind in src/runtime/cuda/nvfp4_gemm.cu), graphs only, 64 steps per batch size.
#   bash .device/cuda/gemv_policies.sh [policies (default "1 2 3 4 5 6 7")] [batches (default 1,4,32,128)]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
for p in ${1:-1 2 3 4 5 6 7}; do
  echo "== GS_GEMV_POLICY=$p"
  GS_GEMV_POLICY=$p "$here/bin/gemmaserve" bench --load-format dummy \
    --config "$cfg" --batch-sizes "${2:-1,4,32,128}" \
    --gen-tokens 64 --eager-steps 0 --prefill-lens '' 2> "$out/gemv_policy_$p.err" \
    | grep -E '^\|' | tee "$out/gemv_policy_$p.md"
done
