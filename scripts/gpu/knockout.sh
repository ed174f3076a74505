#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh): what each part of a decode step
# costs in place, overlaps included. The decode benchmark of the dummy 26B-A4B model runs once
# as is and once per part left out of every layer (GS_PROFILE_SKIP, cuda_runner.cpp; the outputs
# are then meaningless, the timing is not); the GPU machine has no nsys, and ncu serialises the
# kernels, so this is the per-part view of the real graph.
#   bash .device/cuda/knockout.sh [batches (default 1,32)] [kv dtype (default bf16)] [parts]
# Parts (default: each alone, then the whole feed-forward): qkv attn oproj post dense router
# experts combine lmhead, or a comma list of them. Prints ms/step and the saving per step and per
# layer against the full step.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
layers=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c.get('text_config', c)['num_hidden_layers'])" "$cfg")
parts=${3:-"qkv attn oproj post dense router experts combine lmhead dense,router,experts"}
rm -f "$out/knockout.base"
printf '| left out | batch | tok/s | ms/step | saved ms/step | saved us/layer |\n|---|---:|---:|---:|---:|---:|\n'
for p in - $parts; do
  skip=$p; [ "$p" = - ] && skip=
  GS_PROFILE_SKIP=$skip "$here/bin/gemmaserve" bench --load-format dummy --config "$cfg" \
      --batch-sizes "${1:-1,32}" --gen-tokens 48 --eager-steps 0 --prefill-lens '' \
      --kv-cache-dtype "${2:-bf16}" 2>> "$out/knockout.err" |
    awk -F'|' '/^\| +[0-9]/ {gsub(/ /,"",$2); gsub(/ /,"",$3); gsub(/ /,"",$4); print $2, $3, $4}' |
    while read -r batch tps ms; do
      if [ "$p" = - ]; then
        echo "$batch $ms" >> "$out/knockout.base"
        printf '| (nothing) | %s | %s | %s | | |\n' "$batch" "$tps" "$ms"
      else
        b=$(awk -v k="$batch" '$1 == k {print $2}' "$out/knockout.base" | tail -1)
        awk -v p="$p" -v k="$batch" -v t="$tps" -v m="$ms" -v b="$b" -v l="$layers" \
          'BEGIN {per = p == "lmhead" ? "(per step)" : sprintf("%.1f", 1000 * (b - m) / l);
                  printf "| %s | %s | %s | %s | %.2f | %s |\n", p, k, t, m, b - m, per}'
      fi
    done
done
rm -f "$out/knockout.base"
