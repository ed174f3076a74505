#!/usr/bin/env bash
# Checkpoint tools at real size: peak RSS and speed of `gemmaserve convert` (compressed-tensors
# NVFP4 -> ModelOpt) and `gemmaserve quantize` (BF16 -> ModelOpt NVFP4) on random checkpoints with
# the exact tensor shapes of gemma-4-26B-A4B-it (text model; no vision tower), written by
# `make-demo-model --config ... --format ct|bf16`. Prints a markdown table for docs/benchmarks.md.
#
#   scripts/bench_tools_memory.sh [WORK_DIR=/tmp] [BF16_LAYERS=30] [BINARY=build/gemmaserve]
#
# Disk: the CT checkpoint is ~15 GB and its conversion ~16 GB; the BF16 checkpoint is ~1.6 GB per
# layer (48 GB for all 30) plus ~0.45 GB per layer quantized. Steps run one after another and each
# input/output is deleted as soon as it has been measured, so the most held at once is about
# max(31 GB, BF16 + its output). Pass fewer BF16_LAYERS where the disk is smaller.
set -euo pipefail
work=${1:-/tmp}
bf16_layers=${2:-30}
bin=${3:-build/gemmaserve}
config=configs/gemma-4-26B-A4B-it/config.json

if [[ ! -x /usr/bin/time ]]; then
  echo "installing GNU time (for peak RSS)..." >&2
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
[[ -x "$bin" ]] || { echo "no $bin: build it first (cmake --build build --target gemmaserve)" >&2; exit 1; }

dir=$(mktemp -d "$work/gs_bench_tools.XXXXXX")
trap 'rm -rf "$dir"' EXIT
rows=()

gb() { du -sb "$1" | awk '{printf "%.2f", $1 / 1e9}'; }

# measure LABEL INPUT_DIR OUTPUT_DIR -- COMMAND...: runs it under /usr/bin/time -v, adds a row.
measure() {
  local label=$1 in=$2 out=$3
  shift 4
  local log="$dir/time.log"
  /usr/bin/time -v -o "$log" "$@" > "$dir/run.log" 2>&1 || { cat "$dir/run.log" "$log" >&2; exit 1; }
  local secs rss_kb in_gb out_gb
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0;
                     for (i = 1; i <= n; ++i) s = s * 60 + t[i]; print s}' "$log")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  in_gb=$(gb "$in")
  out_gb=$(gb "$out")
  rows+=("$(awk -v l="$label" -v i="$in_gb" -v o="$out_gb" -v s="$secs" -v r="$rss_kb" \
    'BEGIN {printf "| %s | %.2f | %.2f | %.0f | %.2f | %.0f |", l, i, o, s, i / s, r / 1024}')")
  echo "${rows[-1]}" >&2
}

echo "== writing a compressed-tensors NVFP4 checkpoint shaped like gemma-4-26B-A4B-it ($dir/ct)" >&2
time "$bin" make-demo-model --config "$config" --format ct --output "$dir/ct" >&2
measure "convert (CT → ModelOpt), 30 layers" "$dir/ct" "$dir/ct_modelopt" -- \
  "$bin" convert --from "$dir/ct" --to "$dir/ct_modelopt"
rm -rf "$dir/ct" "$dir/ct_modelopt"

echo "== writing a BF16 checkpoint with the first $bf16_layers layers ($dir/bf16)" >&2
time "$bin" make-demo-model --config "$config" --format bf16 --layers "$bf16_layers" --output "$dir/bf16" >&2
measure "quantize (BF16 → NVFP4), $bf16_layers layers" "$dir/bf16" "$dir/bf16_nvfp4" -- \
  "$bin" quantize --from "$dir/bf16" --to "$dir/bf16_nvfp4"
rm -rf "$dir/bf16" "$dir/bf16_nvfp4"

echo
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM; GB = 1e9 bytes, GB/s = input / seconds"
echo
echo "| step | input GB | output GB | seconds | GB/s | peak RSS MB |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
