#!/usr/bin/env bash
# Runs ON the GPU machine: the OpenAI server on the real-size gemma-4-26B-A4B-it with random
# weights (serve --device cuda --load-format dummy), then `gemmaserve bench-serve` (vLLM's
# `vllm bench serve` metrics) at several concurrencies, and prints one markdown table.
#
#   .device/cuda/bench_serve.sh              # full: 1000 in / 1000 out, max(2c, 8) prompts per level
#   QUICK=1 .device/cuda/bench_serve.sh      # quick: 1000 in / 256 out, max(c, 4) prompts per level
#
# Full mode is sized to stay near 6 minutes on an H100 (batch-32 decode ~1700 tok/s); QUICK=1
# takes ~1-2 minutes. Overrides: CONCURRENCIES="1 4 16", INPUT_LEN, OUTPUT_LEN, PROMPTS_PER_C
# (prompts = max(PROMPTS_PER_C x c, MIN_PROMPTS)), MIN_PROMPTS, PORT, SERVE_ARGS (extra serve
# flags, e.g. --enforce-eager), GEMMASERVE (the binary), MODEL_ARGS (replaces "--device cuda
# --load-format dummy --config ...": e.g. "DEMO_DIR --device cpu" for a dry run of this script
# on a CPU with make-demo-model's model). Raw logs (server log, one bench-serve
# output per level, the table) go to $OUT when set, else to a temporary directory.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." 2>/dev/null && pwd)
bin=${GEMMASERVE:-}
if [ -z "$bin" ]; then
  for b in "$here/bin/gemmaserve" "$root/.device/cuda/bin/gemmaserve" "$root/build-gpu/gemmaserve" \
           "$root/build/gemmaserve"; do
    if [ -x "$b" ]; then bin=$b; break; fi
  done
fi
[ -n "$bin" ] || { echo "bench_serve.sh: no gemmaserve binary (set GEMMASERVE)" >&2; exit 1; }
bindir=$(cd "$(dirname "$bin")" && pwd)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$bindir/../lib:$here/lib
config=""
for c in "$here/configs/gemma-4-26B-A4B-it/config.json" "$root/configs/gemma-4-26B-A4B-it/config.json"; do
  if [ -f "$c" ]; then config=$c; break; fi
done
[ -n "$config" ] || { echo "bench_serve.sh: configs/gemma-4-26B-A4B-it/config.json not found" >&2; exit 1; }

if [ "${QUICK:-0}" = "1" ]; then
  mode="quick (QUICK=1)"
  output_len=${OUTPUT_LEN:-256}
  per_c=${PROMPTS_PER_C:-1}
  min_prompts=${MIN_PROMPTS:-4}
else
  mode="full"
  output_len=${OUTPUT_LEN:-1000}
  per_c=${PROMPTS_PER_C:-2}
  min_prompts=${MIN_PROMPTS:-8}
fi
input_len=${INPUT_LEN:-1000}
concurrencies=${CONCURRENCIES:-"1 4 16 32 64 128"}
port=${PORT:-8123}
max_c=1
for c in $concurrencies; do [ "$c" -gt "$max_c" ] && max_c=$c; done
out=${OUT:-$(mktemp -d /tmp/gs-bench-serve.XXXXXX)}
mkdir -p "$out"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

# --- the server
max_len=$(( input_len + output_len + 64 ))
# shellcheck disable=SC2086
model_args=${MODEL_ARGS:-"--device cuda --load-format dummy --config $config"}
# shellcheck disable=SC2086
"$bin" serve $model_args --served-model-name gemma-4-26B-dummy \
    --host 127.0.0.1 --port "$port" --max-num-seqs "$max_c" --max-model-len "$max_len" \
    --max-num-batched-tokens 2048 ${SERVE_ARGS:-} > "$out/server.log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server" 2>/dev/null
  fi
}
trap stop_server EXIT

health() {
  if command -v curl >/dev/null; then
    curl -sf -o /dev/null "http://127.0.0.1:$port/health"
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 &&
       head -1 <&3 | grep -q ' 200') 2>/dev/null
  fi
}
start=$(date +%s)
until health; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "bench_serve.sh: the server exited during startup:" >&2
    tail -20 "$out/server.log" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -gt 300 ]; then
    echo "bench_serve.sh: no /health after 300 s" >&2
    tail -20 "$out/server.log" >&2
    exit 1
  fi
  sleep 1
done
echo "server up after $(( $(date +%s) - start )) s on ${card:-no GPU}:"
grep -E '^(GPU memory|KV cache|KV capacity|generated|uploaded)' "$out/server.log"

# --- the benchmark levels
value() {  # value LABEL FILE: the number after a bench-serve table label
  awk -v l="$1" 'index($0, l) == 1 { v = substr($0, length(l) + 1); gsub(/ /, "", v); print v; exit }' "$2"
}
table=$out/table.md
{
  echo "serve benchmark on ${card:-no GPU}: serve $model_args; mode $mode: $input_len input / $output_len output tokens (--ignore-eos), prompts per level max(${per_c}c, $min_prompts)"
  echo
  echo "| concurrency | prompts | req/s | output tok/s | total tok/s | TTFT mean / median / p99 (ms) | TPOT mean / median / p99 (ms) | ITL mean / median / p99 (ms) | E2EL mean / median / p99 (ms) | failed |"
  echo "|---:|---:|---:|---:|---:|---|---|---|---|---:|"
} > "$table"
status=0
for c in $concurrencies; do
  n=$(( per_c * c ))
  [ "$n" -lt "$min_prompts" ] && n=$min_prompts
  log=$out/bench_c$c.txt
  echo "concurrency $c: $n prompts ..."
  "$bin" bench-serve --host 127.0.0.1 --port "$port" --dataset-name random \
      --random-input-len "$input_len" --random-output-len "$output_len" --num-prompts "$n" \
      --max-concurrency "$c" --ignore-eos --seed "$c" > "$log" 2> "$out/bench_c$c.err"
  rc=$?
  [ $rc -ne 0 ] && status=$rc && tail -3 "$out/bench_c$c.err"
  trio() { echo "$(value "Mean $1 (ms):" "$log") / $(value "Median $1 (ms):" "$log") / $(value "P99 $1 (ms):" "$log")"; }
  echo "| $c | $n | $(value 'Request throughput (req/s):' "$log") | $(value 'Output token throughput (tok/s):' "$log") | $(value 'Total Token throughput (tok/s):' "$log") | $(trio TTFT) | $(trio TPOT) | $(trio ITL) | $(trio E2EL) | $(value 'Failed requests:' "$log") |" >> "$table"
done
stop_server
echo
cat "$table"
echo
echo "raw logs: $out (server.log, bench_c<N>.txt); total $(( $(date +%s) - start )) s"
exit $status
