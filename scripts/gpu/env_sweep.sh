#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh): the decode benchmark of the dummy
# 26B-A4B model once per environment setting, graphs only, to compare kernel switches in one run
# (GS_GEMV_SPLIT, GS_GEMV_POLICY, GS_BF16_GEMV, GS_PDL, ...; "-" is the defaults).
#   bash .device/cuda/env_sweep.sh "- GS_GEMV_SPLIT=2 GS_GEMV_SPLIT=4,GS_PDL=0" [batches] [steps]
# A setting may hold several variables joined by commas. Prints one table row per setting and
# batch: tok/s and ms/step.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
printf '| setting | batch | tok/s | ms/step |\n|---|---:|---:|---:|\n'
for setting in ${1:--}; do
  vars=()
  [ "$setting" != - ] && IFS=, read -r -a vars <<< "$setting"
  env "${vars[@]}" "$here/bin/gemmaserve" bench --load-format dummy \
    --config "$cfg" --batch-sizes "${2:-1,4,16,32}" \
    --gen-tokens "${3:-48}" --eager-steps 0 --prefill-lens '' 2>> "$out/env_sweep.err" \
    | awk -v s="$setting" -F'|' '/^\| +[0-9]/ {gsub(/ /,"",$2); gsub(/ /,"",$3); gsub(/ /,"",$4);
                                  printf "| %s | %s | %s | %s |\n", s, $2, $3, $4}'
done
