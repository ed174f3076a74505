#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh): the kernel timeline of decode
# steps in the real CUDA graph, through the CUPTI tracer (tools/cupti_trace.cpp, loaded with
# CUDA_INJECTION64_PATH; the GPU machine has no nsys and ncu serialises kernels). For each batch
# size and KV dtype: the decode benchmark of the dummy 26B-A4B model under the tracer, then
# trace_report.py's per-kernel summary of the median step (the full per-kernel timeline goes to
# $OUT/trace_b<batch>_<kv>.txt).
#   bash .device/cuda/trace.sh [batches (default 1)] [kv dtypes (default bf16,fp8)]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
for b in ${1:-1}; do
  for kv in $(echo "${2:-bf16,fp8}" | tr , ' '); do
    csv=$out/trace_b${b}_$kv.csv
    CUDA_INJECTION64_PATH=$here/lib/libgs_cupti_trace.so GS_TRACE_OUT=$csv \
      "$here/bin/gemmaserve" bench --load-format dummy --config "$cfg" --batch-sizes "$b" \
        --gen-tokens 64 --eager-steps 0 --prefill-lens '' --kv-cache-dtype "$kv" \
        > "$out/trace_b${b}_$kv.bench.txt" 2>&1
    echo "### batch $b, $kv KV (under the tracer: $(awk -F'|' '/^\| +[0-9]/ {print $3 " tok/s"}' "$out/trace_b${b}_$kv.bench.txt" | head -1))"
    python3 "$here/trace_report.py" --full "$csv" > "$out/trace_b${b}_$kv.txt"
    python3 "$here/trace_report.py" "$csv" | head -40
    rm -f "$csv"
  done
done
